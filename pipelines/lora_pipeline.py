"""The pipeline: fetch the base model, prepare, fine-tune, evaluate -> gate -> export -> register
[-> deploy], inference, report.

This module only says how artifacts flow and where each step runs; parameters are declared once,
in the config sections, and `wire` hands each component the pipeline parameters it declares.
Cache keys: a task's inputs are its cache key, so only register-model receives the pipeline job
name; the other steps read it from their output paths, and a resubmit reuses what did not change.
"""


import inspect
from collections.abc import Callable, Mapping
from typing import Any

from kfp import dsl

from components.common.component import component_parameters
from components.common.config import PipelineConfig
from components.deploy import component as deploy
from components.evaluate import component as evaluation
from components.export import component as export
from components.fetch_model import component as fetch_model
from components.fine_tune import component as fine_tune
from components.inference import component as inference
from components.prepare_data import component as prepare_data
from components.register import component as register
from components.report import component as report
from components.select_trial import component as select_trial
from pipelines import signature
from pipelines.generate import refresh
from pipelines.machines import (
    GPU_STEPS,
    STEP_MACHINES,
    export_machine,
    gpu_step_machines,
    serving_machine,
)
from pipelines.settings import CompileSettings, with_image

PIPELINE_NAME = "dolly-lora"
FINE_TUNE_RETRIES = 2
# Resolved by Vertex AI Pipelines at run time (the placeholders gcpc uses for its own ops).
VERTEX_PLACEHOLDERS = {
    "project": "{{$.pipeline_google_cloud_project_id}}",
    "location": "{{$.pipeline_google_cloud_location}}",
}


def step_components() -> dict[str, Any]:
    """Each step's component, read when the pipeline is built (after `refresh` reloaded a
    rewritten file)."""
    return {
        "fetch-base-model": fetch_model.fetch_base_model,
        "data-key": prepare_data.data_key,
        "prepare-data": prepare_data.prepare_data, "fine-tune": fine_tune.fine_tune,
        "evaluate": evaluation.evaluate, "gate": evaluation.gate,
        "inference": inference.inference, "export": export.export,
        "register-model": register.register_model, "deploy-model": deploy.deploy_model,
        "report": report.report, "select-trial": select_trial.select_trial,
    }


def step_op(component: Any, step: str, settings: CompileSettings,
            machines: Mapping[str, Any]) -> Any:
    """The task factory of one step: in the image; on Vertex a GPU step is a custom job on its
    exact machine (`machines`), the capacity and its deadline of `settings.training`, as the
    pipeline's service account."""
    op = with_image(component, settings.image)
    if settings.target != "vertex" or step not in GPU_STEPS:
        return op
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    job = settings.training.for_step(step, machines[step])
    return create_custom_training_job_from_component(op, **job.custom_job_kwargs(display_name=step))


def place(task: Any, step: str, settings: CompileSettings, machines: Mapping[str, Any],
          defaults: Mapping[str, Any]) -> None:
    """Ask for the step's machine the way the target understands it."""
    machine = export_machine(dict(defaults)) if step == "export" else STEP_MACHINES[step]
    if settings.target == "vertex" and step in GPU_STEPS:
        return  # the custom job's worker pool names the machine
    if settings.target == "kfp" and machine.accelerator_type:
        machine.apply_kubernetes(task, machines[step].accelerator_type,
                                 machines[step].accelerator_count)
        return
    machine.apply(task)


def pipeline_parameters(component: Any) -> list[str]:
    """The pipeline parameters a component takes: those of its inputs that are fields of
    `PipelineConfig` (the rest are artifacts and compile-time constants)."""
    return [k for k in component_parameters(component) if k in PipelineConfig.model_fields]


def pipeline_function(dag: Callable[[dict[str, Any]], None],
                      defaults: Mapping[str, Any]) -> Callable[..., None]:
    """The function KFP reads as the pipeline: `signature.lora_pipeline`'s parameters, types and
    `Args:` help, with this build's defaults (a profile's), running `dag` on the arguments."""
    declared = signature.lora_pipeline
    sig = inspect.signature(declared)

    def lora_pipeline(*args: Any, **kwargs: Any) -> None:
        dag(declared(*args, **kwargs))

    lora_pipeline.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(default=defaults[p.name]) for p in sig.parameters.values()],
        return_annotation=inspect.Signature.empty)
    lora_pipeline.__doc__ = declared.__doc__
    return lora_pipeline


def build_pipeline(settings: CompileSettings) -> Any:
    """The pipeline (a KFP GraphComponent) for one target; compiled or run as is. A signature
    file that no longer matches the config sections is rewritten first."""
    refresh()
    components = step_components()
    defaults = settings.parameter_defaults()
    machines = gpu_step_machines(settings.training, defaults)
    ops = {step: step_op(c, step, settings, machines) for step, c in components.items()}
    t = settings.training
    description = (
        "LoRA fine-tune of an instruction model on Dolly-format data, with evaluation of base "
        f"vs tuned, batched inference and a gated model-registry upload. image={settings.image}"
        + (f" target={settings.target} gpu={t.machine_type}x{t.accelerator_count}"
           f"{t.accelerator_type} capacity={t.capacity.value} profile={settings.profile}"
           if settings.target != "local" else " target=local")
    )
    # A GPU step refuses to start without the accelerator it was compiled for.
    gpu = {"required_accelerator": settings.required_accelerator}

    def sweep_trials(task: Callable[..., Any], base: Any, splits: Mapping[str, Any]) -> Any:
        """One fine-tune per trial (`trial`: the trial's settings alone, so its cache key is
        the single run's plus those), the winner chosen by select-trial on validation."""
        with dsl.ParallelFor(list(settings.sweep), parallelism=settings.sweep_parallelism,
                             name="sweep-trials") as trial:
            one = task("fine-tune", base=base, train=splits["train"],
                       validation=splits["validation"], trial=trial, **gpu)
        return task("select-trial", models=dsl.Collected(one.outputs["model"])).outputs

    def wire(p: Mapping[str, Any]) -> None:
        """The DAG: which artifacts flow where. Parameters reach each step by name."""
        tasks: dict[str, Any] = {}

        def task(step: str, **artifacts_and_constants: Any) -> Any:
            params = {k: p[k] for k in pipeline_parameters(components[step])}
            tasks[step] = ops[step](**params, **artifacts_and_constants)
            return tasks[step]

        # The only step that reads the HF token: the later ones read its folder.
        base = task("fetch-base-model").outputs["model"]
        # The data's content key, read at every run (caching off): prepare-data, and with it
        # every later step, is reused exactly while the data is unchanged.
        key = task("data-key")
        key.set_caching_options(False)
        prep = task("prepare-data", base=base, data_key=key.output)
        splits = {k: prep.outputs[k] for k in ("train", "validation", "test", "rejected")}
        sweep: dict[str, Any] = {}  # the report's trials section, with a sweep
        if settings.sweep:
            chosen = sweep_trials(task, base, splits)
            tuned = chosen["winner"]
            if "sweep" in (components["report"].component_spec.inputs or {}):
                sweep["sweep"] = chosen["sweep"]
        else:
            tuned = task("fine-tune", base=base, train=splits["train"],
                         validation=splits["validation"], **gpu).outputs["model"]
        ev = task("evaluate", base=base, test=splits["test"], model=tuned, **gpu)
        decide = task("gate", generations=ev.outputs["generations"])
        inf = task("inference", base=base, test=splits["test"], model=tuned, **gpu)
        task("report", **splits, model=tuned, generations=ev.outputs["generations"],
             predictions=inf.outputs["predictions"], data_card=prep.outputs["data_card"],
             gpu_steps=",".join(GPU_STEPS), **sweep)
        # The registry gate: `gate` returns True when the bootstrap interval of the improvement
        # clears gate_threshold.
        with dsl.If(decide.outputs["Output"] == True, name="tuned-beats-base"):  # noqa: E712
            vertex = VERTEX_PLACEHOLDERS if settings.target == "vertex" else {}
            # The adapter merged into the base, checked against base+adapter: what serves.
            merged = task("export", base=base, model=tuned, test=splits["test"])
            registered = task(
                "register-model", model=merged.outputs["merged"],
                metrics=decide.outputs["metrics"], train=splits["train"],
                display_name=settings.model_display_name,
                serving_gpus=serving_machine(defaults).accelerator_count,
                pipeline_job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, **vertex)
            # Opt-in: an endpoint costs money every hour it is up.
            with dsl.If(p["deploy"] == True, name="deploy-requested"):  # noqa: E712
                task("deploy-model", registered_model=registered.outputs["registered_model"],
                     **serving_machine(defaults).machine_spec(), image=settings.image,
                     **vertex)
        for step, t in tasks.items():
            t.set_display_name(step)
            place(t, step, settings, machines, defaults)
        if settings.target != "local":  # locally a retry would only repeat a deterministic error
            # A preempted or failed fine-tune is retried in the same job: same run name, so it
            # continues from its last checkpoint (with checkpoint_uri).
            tasks["fine-tune"].set_retry(num_retries=FINE_TUNE_RETRIES, backoff_duration="60s",
                                         backoff_factor=2.0)

    # The profile's parameters (model, precision, batch, sequence) are the compiled defaults.
    return dsl.pipeline(name=PIPELINE_NAME, description=description)(
        pipeline_function(wire, defaults))


# The local runner's pipeline (`submit --local`, tests): plain tasks, default image.
lora_pipeline = build_pipeline(CompileSettings(target="local"))
