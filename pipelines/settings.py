"""Settings: the compile-time ones (image, target, machine) and `resolve`, the one place every
path (compile, submit --local, Vertex, KFP, schedules, the cost estimate) works out a run's
settings and parameters: defaults < profile < environment (DOLLY_LORA_*) < flags < --param.

Why compile time: a KFP pipeline's graph is fixed when it is compiled. The image URI is baked
into every executor, and each GPU step is a Vertex custom job (exact machine type, Spot /
FLEX_START, timeout; `vertex`), a plain task asking Kubernetes for `nvidia.com/gpu` on a GPU node
(`kfp`, open-source Kubeflow Pipelines) or a plain task for `kfp.local` (`local`).
`build_pipeline(CompileSettings)` is the one place that choice is made.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from components.common.errors import InputError, validation_error
from components.common.images import DEFAULT_IMAGE
from pipelines.machines import TrainingJobSpec
from planning.prices import hourly_price
from planning.profiles import DEFAULT_PROFILE, Profile, profile_named

# registry-host[:port]/path[:tag][@sha256:digest], lowercase as Docker requires.
IMAGE_REF = re.compile(
    r"^(?P<repo>[a-z0-9]+([.-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(@(?P<digest>sha256:[0-9a-f]{64}))?$"
)

ENV_IMAGE = "DOLLY_LORA_IMAGE"
ENV_PROFILE = "DOLLY_LORA_PROFILE"
ENV_TRAINING = {  # env var -> TrainingJobSpec field
    "DOLLY_LORA_MACHINE_TYPE": "machine_type",
    "DOLLY_LORA_ACCELERATOR_TYPE": "accelerator_type",
    "DOLLY_LORA_ACCELERATOR_COUNT": "accelerator_count",
    "DOLLY_LORA_BOOT_DISK_GB": "boot_disk_size_gb",
    "DOLLY_LORA_TRAIN_TIMEOUT": "timeout",
    "DOLLY_LORA_CAPACITY": "capacity",
    "DOLLY_LORA_TENSORBOARD": "tensorboard",
    "DOLLY_LORA_BASE_OUTPUT_DIR": "base_output_directory",
}


# Registry names that templates compiled before 2026-12-07 carry in their stamp as if asked for;
# a recompile drops them, so the run names the registry model after its own base model.
_OLD_PROFILE_NAMES = {
    "default": "dolly-lora-gemma3-1b", "4b-qlora": "dolly-lora-gemma3-4b",
    "12b-qlora": "dolly-lora-gemma3-12b", "4b-lora-4xl4": "dolly-lora-gemma3-4b",
    "12b-lora-fsdp-4xl4": "dolly-lora-gemma3-12b",
}


# The one GPU timeout that templates compiled before per-step deadlines (2026-12-07) carry in
# their stamp as if asked for: dropped too, so their recompile gets each step's own deadline.
_OLD_DEFAULT_TIMEOUT = "86400s"


class CompileSettings(BaseModel):
    """Everything that shapes the compiled YAML besides the pipeline parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Literal["vertex", "kfp", "local"] = Field(
        "vertex",
        description="vertex: GPU steps as Vertex custom jobs; kfp: open-source Kubeflow "
        "Pipelines on GKE; local: KFP's local runner.",
    )
    image: str = Field(DEFAULT_IMAGE, description="Image for every component; tag or digest.")
    profile: str = Field(
        DEFAULT_PROFILE,
        description="Row of planning.profiles.PROFILES: model, machine, GPUs, precision, batch "
        "and sequence settings chosen together (each still overridable; `resolve` applies it).",
    )
    training: TrainingJobSpec = Field(default_factory=TrainingJobSpec)
    model_display_name: str = Field(
        "",
        description="Vertex Model Registry model that gets new versions ('' = named at run time "
        "after the run's base model, e.g. dolly-lora-gemma-3-1b-it).",
    )
    sweep: tuple[str, ...] = Field(
        (), description="Sweep trials, each a JSON object of training settings (pipelines/"
        "sweep.py builds the grid); empty = one fine-tune, no ParallelFor.",
    )
    sweep_parallelism: int = Field(
        0, ge=0, description="Trials that run at once (0 = all of them).")

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        return profile_named(v).name

    @property
    def profile_row(self) -> Profile:
        return profile_named(self.profile)

    def parameter_defaults(self) -> dict[str, Any]:
        """The pipeline's parameter defaults under these settings (what a template compiled
        with them declares): `resolve` with these settings and nothing else."""
        return resolve(settings=self.flat(), env={}).params

    @field_validator("image")
    @classmethod
    def _image_ref(cls, v: str) -> str:
        m = IMAGE_REF.match(v)
        if not m:
            raise ValueError(
                f"{v!r} is not an image reference like "
                "REGION-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG or ...IMAGE@sha256:<64 hex>"
            )
        # An image without a tag or digest is whatever `latest` points to when each step pulls
        # it: two steps of one run could run different code. (The placeholder default is
        # refused by `submit` anyway.)
        if v != DEFAULT_IMAGE and not m.group("digest") and m.group("tag") in (None, "latest"):
            what = "the moving tag 'latest'" if m.group("tag") else "no tag or digest"
            raise ValueError(
                f"image {v!r} has {what}, so each step could pull different code; pin it with "
                f"a version tag ({m.group('repo')}:GIT_SHA, as cloudbuild.yaml tags it) or a "
                f"digest ({m.group('repo')}@sha256:...)"
            )
        return v

    @property
    def required_accelerator(self) -> str:
        """What the GPU steps were compiled for: they refuse to run without it ('' = anything,
        for the local runner, which trains on whatever the laptop has)."""
        return "" if self.target == "local" else self.training.accelerator_type

    @property
    def image_digest(self) -> str | None:
        m = IMAGE_REF.match(self.image)
        return m.group("digest") if m else None

    def flat(self) -> dict[str, Any]:
        """Every setting as one flat dict (the training job's fields beside the others)."""
        data = self.model_dump(mode="json")
        return {**{k: v for k, v in data.items() if k != "training"}, **data["training"]}


def from_environment(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings the environment (DOLLY_LORA_*) asks for, as flat overrides."""
    env = os.environ if env is None else env
    found: dict[str, Any] = {f: env[k] for k, f in ENV_TRAINING.items() if env.get(k)}
    if env.get(ENV_IMAGE):
        found["image"] = env[ENV_IMAGE]
    if env.get(ENV_PROFILE):
        found["profile"] = env[ENV_PROFILE]
    return found


@dataclass(frozen=True)
class Resolved:
    """A run's settings and parameters, every layer applied."""

    profile: Profile
    settings: CompileSettings
    # Every pipeline parameter, typed, as the run will use it.
    params: dict[str, Any]
    # Only the parameters a flag or --param set: what a submission sends (the template's
    # defaults are the rest).
    overrides: dict[str, Any]
    # The compile settings the environment and the flags asked for: a template that differs
    # in one of them is stale.
    asked: dict[str, Any]
    # The profile's settings for its own model that another base_model replaced by the
    # defaults (the embedded row's tiny-model learning rate, lengths and batch).
    real_defaults_used: dict[str, Any]
    # The run's cost estimate (planning.cost.Estimate) once `submit` has made one.
    estimate: Any = None


def resolve(
    *, profile: str | None = None, settings: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None, param_pairs: Sequence[str] = (),
    env: Mapping[str, str] | None = None, base: Mapping[str, Any] | None = None,
    default_profile: str = DEFAULT_PROFILE,
) -> Resolved:
    """Defaults < profile < `base` < environment (DOLLY_LORA_*) < flags (`profile`, `settings`,
    `params`) < --param (`param_pairs`, "name=value").

    `base` is a flat dict of compile settings, e.g. those a template was compiled with; it
    counts only for the profile it was compiled with (another profile brings its own machine),
    except its image. The profile is the flag's, else the environment's, else `base`'s, else
    `default_profile`. The parameters' defaults are the config's, the profile's over them, and
    the hourly price of the machine and capacity the settings give (where the price table has
    one). One InputError names every bad value."""
    from components.common.config import PipelineConfig, build, parameter_defaults

    asked_flags = {k: v for k, v in (settings or {}).items() if v is not None}
    if profile:
        asked_flags["profile"] = profile
    from_env = from_environment(env)
    base = dict(base or {})
    name = asked_flags.get("profile") or from_env.get("profile") or base.get("profile") \
        or default_profile
    row = profile_named(name)
    if base.get("profile", DEFAULT_PROFILE) != name:
        base = {k: v for k, v in base.items() if k == "image"}
    if name in _OLD_PROFILE_NAMES and base.get("model_display_name") == _OLD_PROFILE_NAMES[name]:
        del base["model_display_name"]
    if base.get("timeout") == _OLD_DEFAULT_TIMEOUT and "step_timeouts" not in base:
        del base["timeout"]
    merged = {**row.settings, **base, **from_env, **asked_flags, "profile": name}
    training = {k: v for k, v in merged.items() if k in TrainingJobSpec.model_fields}
    top = {k: v for k, v in merged.items() if k not in TrainingJobSpec.model_fields}
    try:
        compiled = CompileSettings(**top, training=TrainingJobSpec(**training))
    except ValidationError as exc:
        raise validation_error(exc, "settings") from None

    given = {**(params or {}), **parse_pairs(param_pairs)}
    profile_params, replaced = row.params_for(given.get("base_model"))
    defaults = parameter_defaults()
    values = {**defaults, **profile_params}
    price = hourly_price(compiled.training.machine_type, compiled.training.capacity)
    if price is not None:
        values["gpu_hourly_usd"] = price
    typed = build(PipelineConfig, {**values, **given}).model_dump()
    return Resolved(
        profile=row, settings=compiled, params=typed,
        overrides={k: typed[k] for k in given},
        asked={**from_env, **{k: v for k, v in asked_flags.items() if v}},
        real_defaults_used={k: defaults[k] for k in replaced if k not in given},
    )


def parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """`["a=1", "b=x=y"]` -> `{"a": "1", "b": "x=y"}`, refusing names the pipeline lacks."""
    import difflib

    from components.common.config import PipelineConfig

    known = list(PipelineConfig.model_fields)
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError(f"--param {pair!r} is not name=value; e.g. --param max_steps=20")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see `submit params`"
            raise InputError(f"unknown pipeline parameter {name!r}{hint}")
        out[name] = value
    return out

# kfp's lightweight-component command ends with this line; `sh -ec` would keep Python as its
# child, and a container runtime's SIGTERM (Spot preemption, a shutdown) goes to PID 1 only.
_EXECUTOR_LINE = "_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main"
_EXEC_LINE = ("export _KFP_RUNTIME=true\n"
              "exec python3 -m components.common.entrypoint kfp.dsl.executor_main")


def exec_python(command: list[str]) -> list[str]:
    """The executor command with Python replacing the shell (`exec`), so Python is the
    container's PID 1 and receives SIGTERM itself; it runs kfp's executor through
    `components.common.entrypoint`, which ends the step cleanly on SIGTERM. Refuses a command of
    another shape: a kfp upgrade that changed it must not silently bring back the un-signalled
    child."""
    hits = [i for i, part in enumerate(command) if _EXECUTOR_LINE in part]
    if len(hits) != 1 and not any(_EXEC_LINE in part for part in command):
        raise RuntimeError(f"unexpected kfp executor command; cannot make Python PID 1: {command}")
    return [part.replace(_EXECUTOR_LINE, _EXEC_LINE) for part in command]


def with_image(component: Any, image: str) -> Any:
    """A copy of a Python component that runs in `image`, Python as the container's main
    process (the original component is untouched)."""
    clone = copy.deepcopy(component)
    container = clone.component_spec.implementation.container
    container.image = image
    container.command = exec_python(list(container.command))
    return clone


def run_estimate(settings: CompileSettings, params: dict[str, Any],
                 price: float | None = None) -> Any:
    """planning.cost.estimate for a run of these parameters under these compile settings: each
    GPU step on the machine the template gives it (derived from the compiled defaults) and,
    with deploy=true, the endpoint's machine for the run's model. InputError when there is
    none (a model the throughput table does not know)."""
    from pipelines.machines import gpu_step_machines, serving_machine
    from planning import cost

    t = settings.training
    defaults = settings.parameter_defaults()
    return cost.estimate(params, settings.profile, t.machine_type, t.accelerator_type,
                         t.accelerator_count, t.capacity.value, price=price,
                         machines=gpu_step_machines(t, defaults),
                         serving=serving_machine(defaults))


def with_deadlines(settings: CompileSettings, est: Any = None) -> CompileSettings:
    """These settings with each GPU step's deadline from `est` (default: the estimate of the
    compiled defaults); unchanged off Vertex, under a --timeout override, or without an
    estimate (the steps then get pipelines.machines.FALLBACK_TIMEOUT)."""
    from planning import cost

    t = settings.training
    if settings.target != "vertex" or t.timeout:
        return settings
    if est is None:
        try:
            est = run_estimate(settings, settings.parameter_defaults())
        except InputError:
            return settings
    timeouts = cost.deadlines(est)
    return settings.model_copy(update={"training": t.model_copy(update={"step_timeouts": timeouts})})
