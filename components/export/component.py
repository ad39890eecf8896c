"""KFP component: merge the adapter into the base and check it. Logic:
`components.export.merge.run_export`."""

from components.common.component import step_component
from components.export.merge import run_export

export = step_component(
    "export", run_export,
    inputs={"base": "Model", "model": "Model", "test": "Dataset"},
    outputs={"merged": "Model", "adapter": "Model"},
    summary="The merged model (safetensors, tokenizer, chat template, generation config) that a "
    "serving container loads, checked against base+adapter; the adapter alone beside it.",
)
