"""The pipeline: prepare -> fine-tune -> evaluate -> (gate) register, fine-tune -> inference, report.

Defaults come from `components.common.config` (one place); the machine each step asks for comes
from `pipelines.resources`; the image and the kind of training task from
`pipelines.settings.CompileSettings`. `build_pipeline(settings)` makes the pipeline for Vertex AI
(`compile.py`) or for KFP's local runner (`lora_pipeline`, used by `submit --local`).
"""


from typing import Any

from kfp import dsl

from components.common.config import parameter_defaults
from components.evaluate.component import evaluate
from components.fine_tune.component import fine_tune
from components.inference.component import inference
from components.prepare_data.component import prepare_data
from components.register.component import register_model
from components.report.component import report
from pipelines.resources import STEP_MACHINES
from pipelines.settings import CompileSettings, with_image

PIPELINE_NAME = "dolly-lora"
# Resolved by Vertex AI Pipelines at run time (the placeholders gcpc uses for its own ops).
VERTEX_PLACEHOLDERS = {
    "project": "{{$.pipeline_google_cloud_project_id}}",
    "location": "{{$.pipeline_google_cloud_location}}",
}
D = parameter_defaults()


def training_op(settings: CompileSettings) -> Any:
    """The fine-tune task: a Vertex custom job on the exact machine, or a plain task locally."""
    op = with_image(fine_tune, settings.image)
    if settings.target == "local":
        return op
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    return create_custom_training_job_from_component(
        op, display_name="fine-tune", **settings.training.custom_job_kwargs()
    )


def build_pipeline(settings: CompileSettings) -> Any:
    """The pipeline (a KFP GraphComponent) for one target; compiled or run as is."""
    ops = {
        "prepare_data": with_image(prepare_data, settings.image),
        "fine_tune": training_op(settings),
        "evaluate": with_image(evaluate, settings.image),
        "inference": with_image(inference, settings.image),
        "register_model": with_image(register_model, settings.image),
        "report": with_image(report, settings.image),
    }
    vertex = settings.target == "vertex"
    description = (
        "LoRA fine-tune of an instruction model on Dolly-format data, with evaluation of base "
        f"vs tuned, batched inference and a gated model-registry upload. image={settings.image}"
        + (f" training={settings.training.machine_type}"
           f"x{settings.training.accelerator_count}{settings.training.accelerator_type}"
           f" capacity={settings.training.capacity.value}" if vertex else " target=local")
    )

    @dsl.pipeline(name=PIPELINE_NAME, description=description)
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
        batching: str = D["batching"],
        logging_steps: int = D["logging_steps"],
        eval_steps: int = D["eval_steps"],
        max_new_tokens: int = D["max_new_tokens"],
        temperature: float = D["temperature"],
        top_p: float = D["top_p"],
        generation_batch_size: int = D["generation_batch_size"],
        eval_max_rows: int = D["eval_max_rows"],
        prompts_uri: str = D["prompts_uri"],
        wandb_project: str = D["wandb_project"],
        headline_metric: str = D["headline_metric"],
        gate_threshold: float = D["gate_threshold"],
        bootstrap_samples: int = D["bootstrap_samples"],
        gpu_hourly_usd: float = D["gpu_hourly_usd"],
        checkpoint_uri: str = D["checkpoint_uri"],
        save_steps: int = D["save_steps"],
        save_minutes: float = D["save_minutes"],
        save_total_limit: int = D["save_total_limit"],
        run_name: str = D["run_name"],
        hf_token_secret: str = D["hf_token_secret"],
        wandb_api_key_secret: str = D["wandb_api_key_secret"],
    ):
        # Every step logs to W&B in one group per pipeline job, the key read from Secret Manager.
        # The job name is also fine-tune's resume key: stable across Vertex restarts of the task.
        tracked = dict(
            wandb_project=wandb_project,
            run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            wandb_api_key_secret=wandb_api_key_secret,
        )
        prep = ops["prepare_data"](
            dataset=dataset,
            base_model=base_model,
            categories=categories,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            max_seq_len=max_seq_len,
            max_bad_row_fraction=max_bad_row_fraction,
            system_prompt=system_prompt,
            seed=seed,
            hf_token_secret=hf_token_secret,
            **tracked,
        ).set_display_name("prepare-data")
        tune = ops["fine_tune"](
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
            batching=batching,
            logging_steps=logging_steps,
            eval_steps=eval_steps,
            checkpoint_uri=checkpoint_uri,
            save_steps=save_steps,
            save_minutes=save_minutes,
            save_total_limit=save_total_limit,
            run_name=run_name,
            hf_token_secret=hf_token_secret,
            **tracked,
        ).set_display_name("fine-tune")
        gen_args = dict(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            generation_batch_size=generation_batch_size,
        )
        ev = ops["evaluate"](
            test=prep.outputs["test"],
            model=tune.outputs["model"],
            eval_max_rows=eval_max_rows,
            headline_metric=headline_metric,
            gate_threshold=gate_threshold,
            bootstrap_samples=bootstrap_samples,
            seed=seed,
            hf_token_secret=hf_token_secret,
            **gen_args,
            **tracked,
        ).set_display_name("evaluate")
        inf = ops["inference"](
            test=prep.outputs["test"],
            model=tune.outputs["model"],
            prompts_uri=prompts_uri,
            system_prompt=system_prompt,
            hf_token_secret=hf_token_secret,
            **gen_args,
            **tracked,
        ).set_display_name("inference")
        rep = ops["report"](
            train=prep.outputs["train"],
            validation=prep.outputs["validation"],
            test=prep.outputs["test"],
            rejected=prep.outputs["rejected"],
            model=tune.outputs["model"],
            generations=ev.outputs["generations"],
            predictions=inf.outputs["predictions"],
            gpu_hourly_usd=gpu_hourly_usd,
            **tracked,
        ).set_display_name("report")
        # The registry gate: evaluate returns True when the bootstrap interval of the improvement
        # clears gate_threshold.
        with dsl.If(ev.outputs["Output"] == True, name="tuned-beats-base"):  # noqa: E712
            reg = ops["register_model"](
                model=tune.outputs["model"],
                display_name=settings.model_display_name,
                serving_image=settings.image,
                pipeline_job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                **(VERTEX_PLACEHOLDERS if vertex else {}),
            ).set_display_name("register-model")
        tasks = [(prep, "prepare-data"), (ev, "evaluate"), (inf, "inference"),
                 (reg, "register-model"), (rep, "report")]
        if not vertex:  # on Vertex the custom job spec picks the training machine
            tasks.append((tune, "fine-tune"))
        for task, step in tasks:
            STEP_MACHINES[step].apply(task)

    return lora_pipeline


# The local runner's pipeline (`submit --local`, tests): plain tasks, default image.
lora_pipeline = build_pipeline(CompileSettings(target="local"))
