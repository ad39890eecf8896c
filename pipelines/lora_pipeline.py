"""The pipeline: fetch the base model, prepare, fine-tune, evaluate -> gate -> register, inference,
report.

Defaults come from `components.common.config` (one place); the machine each step asks for comes
from `pipelines.resources`; the image and the target from `pipelines.settings.CompileSettings`.
`build_pipeline(settings)` makes the pipeline for Vertex AI or open-source KFP (`compile.py`) or
for KFP's local runner (`lora_pipeline`, used by `submit --local`).

Cache keys: a task's inputs are its cache key, so only register-model receives the pipeline job
name (its registry labels need it). The other steps read the job name from their output paths
(`components.common.paths.pipeline_job_name`), and a resubmit with caching on reuses the
fetched model, the data, and the training when nothing they depend on changed.
"""


from typing import Any

from kfp import dsl

from components.common.config import parameter_defaults
from components.evaluate.component import evaluate, gate
from components.fetch_model.component import fetch_base_model
from components.fine_tune.component import fine_tune
from components.inference.component import inference
from components.prepare_data.component import prepare_data
from components.register.component import register_model
from components.report.component import report
from pipelines.resources import GPU_STEPS, STEP_MACHINES
from pipelines.settings import CompileSettings, with_image

PIPELINE_NAME = "dolly-lora"
# Resolved by Vertex AI Pipelines at run time (the placeholders gcpc uses for its own ops).
VERTEX_PLACEHOLDERS = {
    "project": "{{$.pipeline_google_cloud_project_id}}",
    "location": "{{$.pipeline_google_cloud_location}}",
}
D = parameter_defaults()


def step_op(component: Any, step: str, settings: CompileSettings) -> Any:
    """The task factory of one step: in the image; on Vertex a GPU step is a custom job on the
    exact machine and capacity of `settings.training`, as the pipeline's service account."""
    op = with_image(component, settings.image)
    if settings.target != "vertex" or step not in GPU_STEPS:
        return op
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    return create_custom_training_job_from_component(
        op, **settings.training.custom_job_kwargs(display_name=step)
    )


def place(task: Any, step: str, settings: CompileSettings) -> None:
    """Ask for the step's machine the way the target understands it."""
    machine = STEP_MACHINES[step]
    if settings.target == "vertex" and step in GPU_STEPS:
        return  # the custom job's worker pool names the machine
    if settings.target == "kfp" and machine.accelerator_type:
        machine.apply_kubernetes(task, settings.training.accelerator_type,
                                 settings.training.accelerator_count)
        return
    machine.apply(task)


def build_pipeline(settings: CompileSettings) -> Any:
    """The pipeline (a KFP GraphComponent) for one target; compiled or run as is."""
    components = {
        "fetch-base-model": fetch_base_model, "prepare-data": prepare_data,
        "fine-tune": fine_tune, "evaluate": evaluate, "gate": gate, "inference": inference,
        "register-model": register_model, "report": report,
    }
    ops = {step: step_op(c, step, settings) for step, c in components.items()}
    t = settings.training
    description = (
        "LoRA fine-tune of an instruction model on Dolly-format data, with evaluation of base "
        f"vs tuned, batched inference and a gated model-registry upload. image={settings.image}"
        f" profile={settings.profile}"
        + (f" target={settings.target} gpu={t.machine_type}x{t.accelerator_count}"
           f"{t.accelerator_type} capacity={t.capacity.value}"
           if settings.target != "local" else " target=local")
    )
    # The profile's parameters (model, precision, batch, sequence) are the compiled defaults.
    D = settings.parameter_defaults()  # noqa: N806 - the same name the signature reads below

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
        quantization: str = D["quantization"],
        num_processes: int = D["num_processes"],
        distributed: str = D["distributed"],
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
        cost_estimate: str = D["cost_estimate"],
        checkpoint_uri: str = D["checkpoint_uri"],
        save_steps: int = D["save_steps"],
        save_minutes: float = D["save_minutes"],
        save_total_limit: int = D["save_total_limit"],
        run_name: str = D["run_name"],
        hf_token_secret: str = D["hf_token_secret"],
        wandb_api_key_secret: str = D["wandb_api_key_secret"],
    ):
        # Every step logs to W&B (the key read from Secret Manager), grouped by pipeline job.
        tracked = dict(wandb_project=wandb_project, wandb_api_key_secret=wandb_api_key_secret)
        # A GPU step refuses to start without the accelerator it was compiled for.
        gpu = dict(required_accelerator=settings.required_accelerator)
        tasks: dict[str, Any] = {}
        # The only step that reads the HF token: the later ones read its folder.
        tasks["fetch-base-model"] = fetch = ops["fetch-base-model"](
            base_model=base_model, hf_token_secret=hf_token_secret
        )
        base = fetch.outputs["model"]
        tasks["prepare-data"] = prep = ops["prepare-data"](
            base=base,
            dataset=dataset,
            categories=categories,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            max_seq_len=max_seq_len,
            max_bad_row_fraction=max_bad_row_fraction,
            system_prompt=system_prompt,
            seed=seed,
            **tracked,
        )
        tasks["fine-tune"] = tune = ops["fine-tune"](
            base=base,
            train=prep.outputs["train"],
            validation=prep.outputs["validation"],
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
            quantization=quantization,
            num_processes=num_processes,
            distributed=distributed,
            batching=batching,
            logging_steps=logging_steps,
            eval_steps=eval_steps,
            checkpoint_uri=checkpoint_uri,
            save_steps=save_steps,
            save_minutes=save_minutes,
            save_total_limit=save_total_limit,
            run_name=run_name,
            **tracked,
            **gpu,
        )
        gen_args = dict(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            generation_batch_size=generation_batch_size,
        )
        tasks["evaluate"] = ev = ops["evaluate"](
            base=base,
            test=prep.outputs["test"],
            model=tune.outputs["model"],
            eval_max_rows=eval_max_rows,
            headline_metric=headline_metric,
            gate_threshold=gate_threshold,
            bootstrap_samples=bootstrap_samples,
            seed=seed,
            **gen_args,
            **tracked,
            **gpu,
        )
        tasks["gate"] = decide = ops["gate"](generations=ev.outputs["generations"])
        tasks["inference"] = inf = ops["inference"](
            base=base,
            test=prep.outputs["test"],
            model=tune.outputs["model"],
            prompts_uri=prompts_uri,
            system_prompt=system_prompt,
            **gen_args,
            **tracked,
            **gpu,
        )
        tasks["report"] = ops["report"](
            train=prep.outputs["train"],
            validation=prep.outputs["validation"],
            test=prep.outputs["test"],
            rejected=prep.outputs["rejected"],
            model=tune.outputs["model"],
            generations=ev.outputs["generations"],
            predictions=inf.outputs["predictions"],
            gpu_hourly_usd=gpu_hourly_usd,
            cost_estimate=cost_estimate,
            **tracked,
        )
        # The registry gate: `gate` returns True when the bootstrap interval of the improvement
        # clears gate_threshold.
        with dsl.If(decide.outputs["Output"] == True, name="tuned-beats-base"):  # noqa: E712
            tasks["register-model"] = ops["register-model"](
                model=tune.outputs["model"],
                display_name=settings.model_display_name,
                serving_image=settings.image,
                pipeline_job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                **(VERTEX_PLACEHOLDERS if settings.target == "vertex" else {}),
            )
        for step, task in tasks.items():
            task.set_display_name(step)
            place(task, step, settings)

    return lora_pipeline


# The local runner's pipeline (`submit --local`, tests): plain tasks, default image.
lora_pipeline = build_pipeline(CompileSettings(target="local"))
