"""KFP component: fetch the base model once. Logic: `components.fetch_model.fetch.fetch_model`."""

from kfp import dsl
from kfp.dsl import Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def fetch_base_model(base_model: str, hf_token_secret: str, model: Output[Model]):
    """Download the base model (Hub id, gs:// or embedded://) into the pipeline root, once."""
    from pathlib import Path

    from components.common.secrets import load_secrets
    from components.fetch_model.fetch import fetch_model

    load_secrets({"hf_token_secret": hf_token_secret})
    model.metadata.update(fetch_model(base_model, Path(model.path)))
