"""KFP component: merge the adapter into the base and check it. Logic:
`components.export.merge.run_export`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.common.component import StepSpec
from components.common.images import DEFAULT_IMAGE
from components.export.merge import run_export

SPEC = StepSpec(
    "export", run_export,
    inputs={"base": Model, "model": Model, "test": Dataset},
    outputs={"merged": Model, "adapter": Model},
    summary="The merged model (safetensors, tokenizer, chat template, generation config) that a "
    "serving container loads, checked against base+adapter; the adapter alone beside it.",
)


# Generated from the spec(s) above and the config sections by scripts/generate_components.py.
# Edit the specs or ExportConfig, not what follows.
# Every pipeline build (compile.py, submit --local) rewrites it when stale.
@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def export(
    base: Input[Model],
    model: Input[Model],
    test: Input[Dataset],
    export_dtype: str,
    merged: Output[Model],
    adapter: Output[Model],
):
    """The merged model (safetensors, tokenizer, chat template, generation config) that a serving
    container loads, checked against base+adapter; the adapter alone beside it.

    Args:
        export_dtype: Weights of the merged model: bfloat16 (what vLLM serves on an L4), float32, or auto =
            the fine-tune's precision (bf16 on a GPU; fp32 on CPU, so a CPU-trained model answers
            exactly what was evaluated).
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.export.merge import run_export

    io = StepIO(
        inputs={'base': base, 'model': model, 'test': test},
        outputs={'merged': merged, 'adapter': adapter},
    )
    return call(run_export, arguments, io)
