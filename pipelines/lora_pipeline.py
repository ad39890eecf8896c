"""The pipeline: fetch the base model, prepare, fine-tune, evaluate -> gate -> export -> register
[-> deploy], inference, report.

Each parameter is declared once, as a field of its step's config section
(`components.common.config`): the components' signatures (`components/<step>/component.py`) and
the pipeline's flat signature with its `Args:` docstring (`pipelines/signature.py`, the help the
Vertex console shows beside each parameter) are written from the sections by `pipelines.generate`,
which `build_pipeline` runs first so a stale file is rewritten, and `wire` hands every component
exactly the pipeline parameters it declares. This module only says how the artifacts flow and
where each step runs: the machine from `pipelines.machines`, the image and the target from
`pipelines.settings.CompileSettings`. `build_pipeline(settings)` makes it for Vertex AI or
open-source KFP (`compile.py`) or for KFP's local runner (`submit --local`).

Cache keys: a task's inputs are its cache key, so only register-model receives the pipeline job
name (its registry labels need it). The other steps read the job name from their output paths
(`components.common.paths.pipeline_job_name`), and a resubmit with caching on reuses the
fetched model, the data, and the training when nothing they depend on changed.
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
from pipelines import signature
from pipelines.generate import refresh
from pipelines.machines import GPU_STEPS, SERVING_MACHINE, STEP_MACHINES
from pipelines.settings import CompileSettings, with_image

PIPELINE_NAME = "dolly-lora"
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
        "prepare-data": prepare_data.prepare_data, "fine-tune": fine_tune.fine_tune,
        "evaluate": evaluation.evaluate, "gate": evaluation.gate,
        "inference": inference.inference, "export": export.export,
        "register-model": register.register_model, "deploy-model": deploy.deploy_model,
        "report": report.report,
    }


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
    ops = {step: step_op(c, step, settings) for step, c in components.items()}
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

    def wire(p: Mapping[str, Any]) -> None:
        """The DAG: which artifacts flow where. Parameters reach each step by name."""
        tasks: dict[str, Any] = {}

        def task(step: str, **artifacts_and_constants: Any) -> Any:
            params = {k: p[k] for k in pipeline_parameters(components[step])}
            tasks[step] = ops[step](**params, **artifacts_and_constants)
            return tasks[step]

        # The only step that reads the HF token: the later ones read its folder.
        base = task("fetch-base-model").outputs["model"]
        prep = task("prepare-data", base=base)
        splits = {k: prep.outputs[k] for k in ("train", "validation", "test", "rejected")}
        tuned = task("fine-tune", base=base, train=splits["train"],
                     validation=splits["validation"], **gpu).outputs["model"]
        ev = task("evaluate", base=base, test=splits["test"], model=tuned, **gpu)
        decide = task("gate", generations=ev.outputs["generations"])
        inf = task("inference", base=base, test=splits["test"], model=tuned, **gpu)
        task("report", **splits, model=tuned, generations=ev.outputs["generations"],
             predictions=inf.outputs["predictions"], data_card=prep.outputs["data_card"],
             gpu_steps=",".join(GPU_STEPS))
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
                pipeline_job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, **vertex)
            # Opt-in: an endpoint costs money every hour it is up.
            with dsl.If(p["deploy"] == True, name="deploy-requested"):  # noqa: E712
                task("deploy-model", registered_model=registered.outputs["registered_model"],
                     **SERVING_MACHINE.machine_spec(), **vertex)
        for step, t in tasks.items():
            t.set_display_name(step)
            place(t, step, settings)

    # The profile's parameters (model, precision, batch, sequence) are the compiled defaults.
    return dsl.pipeline(name=PIPELINE_NAME, description=description)(
        pipeline_function(wire, settings.parameter_defaults()))


# The local runner's pipeline (`submit --local`, tests): plain tasks, default image.
lora_pipeline = build_pipeline(CompileSettings(target="local"))
