"""KFP component: fetch the base model once. Logic: `components.fetch_model.fetch.run_fetch`."""

from kfp import dsl
from kfp.dsl import Model, Output

from components.common.component import StepSpec
from components.common.images import DEFAULT_IMAGE
from components.fetch_model.fetch import run_fetch

SPEC = StepSpec(
    "fetch_base_model", run_fetch, outputs={"model": Model},
    summary="Download the base model (Hub id, gs:// or embedded://) into the pipeline root, once.",
)


# Generated from the spec(s) above and the config sections by scripts/generate_components.py.
# Edit the specs or FetchConfig, not what follows.
# Every pipeline build (compile.py, submit --local) rewrites it when stale.
@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def fetch_base_model(
    base_model: str,
    hf_token_secret: str,
    model: Output[Model],
):
    """Download the base model (Hub id, gs:// or embedded://) into the pipeline root, once.

    Args:
        base_model: Hugging Face model id, local folder, gs:// folder or embedded://tiny-gemma3.
        hf_token_secret: Secret Manager name of the HF token (gated Gemma), '' = env/.env.
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.fetch_model.fetch import run_fetch

    io = StepIO(
        inputs={},
        outputs={'model': model},
    )
    return call(run_fetch, arguments, io)
