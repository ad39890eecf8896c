"""KFP component: LoRA fine-tune. Logic: `components.fine_tune.train.run_fine_tune`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def fine_tune(
    base: Input[Model],
    train: Input[Dataset],
    validation: Input[Dataset],
    max_seq_len: int,
    seed: int,
    lora_r: int,
    lora_alpha: int,
    lora_dropout: float,
    target_modules: str,
    learning_rate: float,
    lr_scheduler_type: str,
    warmup_ratio: float,
    num_train_epochs: float,
    max_steps: int,
    per_device_train_batch_size: int,
    gradient_accumulation_steps: int,
    weight_decay: float,
    max_grad_norm: float,
    bf16: str,
    quantization: str,
    num_processes: int,
    distributed: str,
    batching: str,
    logging_steps: int,
    eval_steps: int,
    checkpoint_uri: str,
    save_steps: int,
    save_minutes: float,
    save_total_limit: int,
    wandb_project: str,
    run_name: str,
    wandb_api_key_secret: str,
    required_accelerator: str,
    model: Output[Model],
):
    """Train a LoRA adapter on the train split; validation loss during training.

    With checkpoint_uri, checkpoints stream to <checkpoint_uri>/<run_name or pipeline job>/
    fine-tune/ and a restarted task resumes from the newest complete one. Everything the later
    steps need is written into the model folder (on Vertex this step is a custom job, whose
    artifact metadata does not reach the pipeline)."""
    params = {k: v for k, v in locals().items() if not hasattr(v, "path")}
    from components.common.paths import pipeline_job_name
    from components.common.secrets import load_secrets
    from components.fine_tune.train import run_fine_tune

    load_secrets({"wandb_api_key_secret": params.pop("wandb_api_key_secret")})
    params["base_model"] = base.path
    model.metadata.update(run_fine_tune(
        params, train.path, validation.path, model.path,
        run_id=pipeline_job_name(model.path), wandb_project=wandb_project,
    ))
