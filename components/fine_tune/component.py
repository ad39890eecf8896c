"""KFP component: LoRA fine-tune. Logic: `components.fine_tune.train.run_fine_tune`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.common.component import REQUIRED, StepSpec
from components.common.images import DEFAULT_IMAGE
from components.fine_tune.train import run_fine_tune

SPEC = StepSpec(
    "fine_tune", run_fine_tune,
    inputs={"base": Model, "train": Dataset, "validation": Dataset},
    outputs={"model": Model},
    config_from_inputs={"base_model": "base"},
    run_id_from="model",
    constants={"required_accelerator": (str, REQUIRED), "trial": (str, "")},
    summary="Train a LoRA adapter on the train split; validation loss during training. With "
    "checkpoint_uri, checkpoints stream to <checkpoint_uri>/<run_name or pipeline job>/fine-tune/ "
    "and a restarted task resumes from the newest complete one.",
)


# Generated from the spec(s) above and the config sections by scripts/generate_components.py.
# Edit the specs or TrainConfig, not what follows.
# Every pipeline build (compile.py, submit --local) rewrites it when stale.
@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def fine_tune(
    base: Input[Model],
    train: Input[Dataset],
    validation: Input[Dataset],
    trackers: str,
    wandb_project: str,
    wandb_api_key_secret: str,
    mlflow_tracking_uri: str,
    mlflow_token_secret: str,
    vertex_experiment: str,
    run_name: str,
    seed: int,
    max_seq_len: int,
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
    required_accelerator: str,
    model: Output[Model],
    trial: str = '',
):
    """Train a LoRA adapter on the train split; validation loss during training. With
    checkpoint_uri, checkpoints stream to <checkpoint_uri>/<run_name or pipeline job>/fine-tune/
    and a restarted task resumes from the newest complete one.

    Args:
        trackers: Comma-separated trackers every step reports to: wandb, tensorboard, mlflow, vertex ('' =
            none). A tracker that cannot be reached warns once; the step goes on.
        wandb_project: W&B project (key from env/.env only).
        wandb_api_key_secret: Secret Manager name of the W&B API key, '' = env/.env.
        mlflow_tracking_uri: MLflow tracking server URI ('' = the MLFLOW_TRACKING_URI environment variable, else a
            local store next to the run; credentials from env/Secret Manager).
        mlflow_token_secret: Secret Manager name of the MLflow tracking token (MLFLOW_TRACKING_TOKEN), '' = env/.env.
        vertex_experiment: Vertex AI experiment the steps log to with trackers=vertex ('' = dolly-lora); submit
            --experiment sets it.
        run_name: Stable run name for checkpoints ('' = the pipeline job name). submit --local sets it to
            --run-id, so a rerun finds its checkpoints.
        seed: Seed for the split, LoRA init and data order.
        max_seq_len: Longest prompt+response in tokens; longer rows drop.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (scale = alpha / r).
        lora_dropout: Dropout on the LoRA path.
        target_modules: 'all-linear' or comma-separated module names (e.g. q_proj,v_proj).
        learning_rate: Peak learning rate.
        lr_scheduler_type: Learning-rate schedule after warmup.
        warmup_ratio: Share of steps for warmup.
        num_train_epochs: Epochs (ignored if max_steps > 0).
        max_steps: Stop after this many optimizer steps (-1: num_train_epochs).
        per_device_train_batch_size: Sequences per forward pass.
        gradient_accumulation_steps: Micro-batches per optimizer step.
        weight_decay: AdamW weight decay.
        max_grad_norm: Gradient clipping norm.
        bf16: bf16 mixed precision; 'auto' = on where the GPU supports it.
        quantization: Base weights while training: 'none' (bf16 on GPU, fp32 on CPU) or 'nf4' (QLoRA: 4-bit
            NormalFloat with double quantization via bitsandbytes, bf16 compute). Evaluation and
            inference load the base the way the adapter was trained.
        num_processes: Training processes, data-parallel, one per GPU (0 = one per GPU the machine has, 1 on
            CPU). Global batch = per_device_train_batch_size x gradient_accumulation_steps x
            num_processes.
        distributed: With several processes: 'ddp' keeps a whole model on every GPU; 'fsdp' shards the frozen
            base across them (a model bigger than one GPU).
        batching: 'padded': length-bucketed dynamic padding (CPU); 'packed': padding-free best-fit packing
            of whole rows into max_seq_len (GPU); 'auto' picks by hardware.
        logging_steps: Log loss/lr every N steps.
        eval_steps: Validation loss every N steps.
        checkpoint_uri: gs:// root for resumable checkpoints ('' = none); they go to
            <root>/<run>/fine-tune/checkpoints/step-NNNNNN/ and a rerun of the same run resumes.
        save_steps: Checkpoint every N optimizer steps.
        save_minutes: Also checkpoint when this many minutes passed (0 = off).
        save_total_limit: Complete checkpoints kept in GCS.
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.fine_tune.train import run_fine_tune

    io = StepIO(
        inputs={'base': base, 'train': train, 'validation': validation},
        outputs={'model': model},
        config_from_inputs={'base_model': 'base'},
        run_id_from='model',
    )
    return call(run_fine_tune, arguments, io)
