"""KFP component: prepare data. Logic: `components.prepare_data.prepare.run_prepare`."""

from components.common.component import step_component
from components.prepare_data.prepare import run_prepare

prepare_data = step_component(
    "prepare_data", run_prepare,
    inputs={"base": "Model"},
    outputs={"train": "Dataset", "validation": "Dataset", "test": "Dataset", "rejected": "Dataset"},
    from_artifacts={"base_model": "base"},
    summary="Validate, format as chat, filter and split Dolly-format rows (the base model's "
    "tokenizer measures token lengths).",
)
