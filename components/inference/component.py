"""KFP component: batched inference. Logic: `components.inference.infer.run_inference`."""

import inspect

from components.common.component import step_component
from components.inference.infer import run_inference

inference = step_component(
    "inference", run_inference,
    inputs={"base": "Model", "test": "Dataset", "model": "Model"},
    outputs={"predictions": "Dataset"},
    constants={"required_accelerator": (str, inspect.Parameter.empty)},
    summary="Generate answers with the tuned model for the test prompts or a prompts JSONL; the "
    "predictions folder holds predictions.jsonl and summary.json.",
)
