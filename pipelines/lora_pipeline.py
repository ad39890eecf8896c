"""The pipeline: prepare -> fine-tune -> evaluate, and fine-tune -> inference.

Defaults come from `components.common.config` (one place); the machine each step asks for comes
from `pipelines.resources`. The same function is compiled by `compile.py` for Vertex AI and run
by `submit --local` with KFP's local runner.
"""


from kfp import dsl

from components.common.config import parameter_defaults
from components.evaluate.component import evaluate
from components.fine_tune.component import fine_tune
from components.inference.component import inference
from components.prepare_data.component import prepare_data
from pipelines.resources import STEP_MACHINES

PIPELINE_NAME = "dolly-lora"
D = parameter_defaults()


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="LoRA fine-tune of an instruction model on Dolly-format data, with evaluation "
    "of base vs tuned and batched inference.",
)
def lora_pipeline(
    base_model: str = D["base_model"],
    dataset: str = D["dataset"],
    categories: str = D["categories"],
    val_fraction: float = D["val_fraction"],
    test_fraction: float = D["test_fraction"],
    max_seq_len: int = D["max_seq_len"],
    max_bad_row_fraction: float = D["max_bad_row_fraction"],
    system_prompt: str = D["system_prompt"],
    seed: int = D["seed"],
    lora_r: int = D["lora_r"],
    lora_alpha: int = D["lora_alpha"],
    lora_dropout: float = D["lora_dropout"],
    target_modules: str = D["target_modules"],
    learning_rate: float = D["learning_rate"],
    lr_scheduler_type: str = D["lr_scheduler_type"],
    warmup_ratio: float = D["warmup_ratio"],
    num_train_epochs: float = D["num_train_epochs"],
    max_steps: int = D["max_steps"],
    per_device_train_batch_size: int = D["per_device_train_batch_size"],
    gradient_accumulation_steps: int = D["gradient_accumulation_steps"],
    weight_decay: float = D["weight_decay"],
    max_grad_norm: float = D["max_grad_norm"],
    bf16: str = D["bf16"],
    logging_steps: int = D["logging_steps"],
    eval_steps: int = D["eval_steps"],
    max_new_tokens: int = D["max_new_tokens"],
    temperature: float = D["temperature"],
    top_p: float = D["top_p"],
    generation_batch_size: int = D["generation_batch_size"],
    eval_max_rows: int = D["eval_max_rows"],
    prompts_uri: str = D["prompts_uri"],
    wandb_project: str = D["wandb_project"],
    checkpoint_uri: str = D["checkpoint_uri"],
    save_steps: int = D["save_steps"],
    save_minutes: float = D["save_minutes"],
    save_total_limit: int = D["save_total_limit"],
    run_name: str = D["run_name"],
    # Consumed by the Vertex custom-job wrapper of fine-tune (strategy=, with
    # restart_job_on_worker_restart=True); the local runner has no capacity to choose.
    train_strategy: str = D["train_strategy"],
):
    prep = prepare_data(
        dataset=dataset,
        base_model=base_model,
        categories=categories,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        max_seq_len=max_seq_len,
        max_bad_row_fraction=max_bad_row_fraction,
        system_prompt=system_prompt,
        seed=seed,
    ).set_display_name("prepare-data")
    tune = fine_tune(
        train=prep.outputs["train"],
        validation=prep.outputs["validation"],
        base_model=base_model,
        max_seq_len=max_seq_len,
        seed=seed,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        learning_rate=learning_rate,
        lr_scheduler_type=lr_scheduler_type,
        warmup_ratio=warmup_ratio,
        num_train_epochs=num_train_epochs,
        max_steps=max_steps,
        per_device_train_batch_size=per_device_train_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        bf16=bf16,
        logging_steps=logging_steps,
        eval_steps=eval_steps,
        checkpoint_uri=checkpoint_uri,
        save_steps=save_steps,
        save_minutes=save_minutes,
        save_total_limit=save_total_limit,
        wandb_project=wandb_project,
        run_name=run_name,
        # Stable across Vertex restarts of the task and retries of the run: the resume key.
        run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    ).set_display_name("fine-tune")
    gen_args = dict(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        generation_batch_size=generation_batch_size,
    )
    ev = evaluate(
        test=prep.outputs["test"],
        model=tune.outputs["model"],
        eval_max_rows=eval_max_rows,
        wandb_project=wandb_project,
        run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        **gen_args,
    ).set_display_name("evaluate")
    inf = inference(
        test=prep.outputs["test"],
        model=tune.outputs["model"],
        prompts_uri=prompts_uri,
        system_prompt=system_prompt,
        **gen_args,
    ).set_display_name("inference")
    for task, step in ((prep, "prepare-data"), (tune, "fine-tune"), (ev, "evaluate"),
                       (inf, "inference")):
        STEP_MACHINES[step].apply(task)
