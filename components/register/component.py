"""KFP component: register the merged model. Logic: `components.register.register.run_register`.

The output is a `google.VertexModel` artifact, which the console links to the registry entry.
`project` and `location` default to '' (the local runner writes a local record). The Vertex
target passes Vertex's run-time placeholders for them as arguments, never in this source: the
local runner would try to resolve a placeholder written here.
"""

from google_cloud_pipeline_components.types.artifact_types import VertexModel
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.component import REQUIRED, StepSpec
from components.common.images import DEFAULT_IMAGE
from components.register.register import run_register

SPEC = StepSpec(
    "register_model", run_register,
    inputs={"model": Model, "metrics": Metrics, "train": Dataset},
    outputs={"registered_model": VertexModel},
    input_metadata={"model_metadata": "model", "metrics_metadata": "metrics",
                    "train_metadata": "train"},
    constants={"display_name": (str, REQUIRED), "pipeline_job": (str, REQUIRED),
               "serving_gpus": (int, 1), "project": (str, ""), "location": (str, "")},
    summary="Upload the merged model, with a vLLM serving container, as a new version of one "
    "Vertex Model Registry model; the output is a google.VertexModel artifact.",
)


# Generated from the spec(s) above and the config sections by scripts/generate_components.py.
# Edit the specs or RegisterConfig, not what follows.
# Every pipeline build (compile.py, submit --local) rewrites it when stale.
@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    metrics: Input[Metrics],
    train: Input[Dataset],
    serving_image: str,
    serving_max_model_len: int,
    display_name: str,
    pipeline_job: str,
    registered_model: Output[VertexModel],
    serving_gpus: int = 1,
    project: str = '',
    location: str = '',
):
    """Upload the merged model, with a vLLM serving container, as a new version of one Vertex Model
    Registry model; the output is a google.VertexModel artifact.

    Args:
        serving_image: Serving container of the registered model: Model Garden's prebuilt vLLM image (a newer
            pytorch-vllm-serve tag works the same way).
        serving_max_model_len: vLLM --max-model-len: longest prompt+answer the endpoint accepts (Gemma 3 1B's context;
            its KV cache fits one L4 many times over).
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.register.register import run_register

    io = StepIO(
        inputs={'model': model, 'metrics': metrics, 'train': train},
        outputs={'registered_model': registered_model},
        input_metadata={
            'model_metadata': 'model',
            'metrics_metadata': 'metrics',
            'train_metadata': 'train',
        },
    )
    return call(run_register, arguments, io)
