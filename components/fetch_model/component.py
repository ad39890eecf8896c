"""KFP component: fetch the base model once. Logic: `components.fetch_model.fetch.run_fetch`."""

from components.common.component import step_component
from components.fetch_model.fetch import run_fetch

fetch_base_model = step_component(
    "fetch_base_model", run_fetch, outputs={"model": "Model"},
    summary="Download the base model (Hub id, gs:// or embedded://) into the pipeline root, once.",
)
