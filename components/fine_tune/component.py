"""KFP component: LoRA fine-tune. Logic: `components.fine_tune.train.run_fine_tune`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def fine_tune(
    train: Input[Dataset],
    validation: Input[Dataset],
    base_model: str,
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
    batching: str,
    logging_steps: int,
    eval_steps: int,
    checkpoint_uri: str,
    save_steps: int,
    save_minutes: float,
    save_total_limit: int,
    wandb_project: str,
    run_name: str,
    run_id: str,
    hf_token_secret: str,
    wandb_api_key_secret: str,
    model: Output[Model],
):
    """Train a LoRA adapter on the train split; validation loss during training.

    With checkpoint_uri, checkpoints stream to <checkpoint_uri>/<run_name or run_id>/fine-tune/
    and a restarted task resumes from the newest complete one."""
    params = {k: v for k, v in locals().items() if k not in ("train", "validation", "model")}
    import time

    from components.common.secrets import load_secrets
    from components.fine_tune.train import run_fine_tune

    t0 = time.perf_counter()
    # Secret Manager names, not values: read them into the environment, keep them out of params.
    load_secrets({k: params.pop(k) for k in ("hf_token_secret", "wandb_api_key_secret")})
    meta = run_fine_tune(
        params, train.path, validation.path, model.path, run_id=run_id, wandb_project=wandb_project
    )
    model.metadata.update(meta)
    model.metadata["step_seconds"] = round(time.perf_counter() - t0, 2)
