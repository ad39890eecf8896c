"""KFP component: LoRA fine-tune. Logic: `components.fine_tune.train.run_fine_tune`."""

import inspect

from components.common.component import step_component
from components.fine_tune.train import run_fine_tune

fine_tune = step_component(
    "fine_tune", run_fine_tune,
    inputs={"base": "Model", "train": "Dataset", "validation": "Dataset"},
    outputs={"model": "Model"},
    from_artifacts={"base_model": "base"},
    constants={"required_accelerator": (str, inspect.Parameter.empty)},
    summary="Train a LoRA adapter on the train split; validation loss during training. With "
    "checkpoint_uri, checkpoints stream to <checkpoint_uri>/<run_name or pipeline job>/fine-tune/ "
    "and a restarted task resumes from the newest complete one.",
)
