"""The one shape of every step at run time: typed config in, file paths in and out, metadata back.

A step's logic is `run_<step>(cfg, *, <input>: str, ..., <output>: str, ...)`, reached the same
way from a KFP component body (`call` with an explicit `StepIO`), from the command line (`main`,
a parser built from the section, as TRL's `TrlParser`) and from tests. `step_run` wraps the work:
timing, secrets from Secret Manager, the tracking run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from components.common.config import TrackingConfig, build
from components.common.errors import InputError
from components.common.memory import peak_memory
from components.common.results import Output
from components.common.tracking import DummyRun

SECRET_SUFFIX = "_secret"


@dataclass
class StepResult:
    """Metadata per output artifact, and the value a component returns (the gate's verdict).

    A run function returns `{output: <results.Output>}` (or this, to return a value too); the
    typed outputs become plain metadata here, so KFP and the command line see JSON."""

    metadata: dict[str, Any] = field(default_factory=dict)
    value: Any = None

    def __post_init__(self) -> None:
        self.metadata = {name: meta.metadata() if isinstance(meta, Output) else dict(meta)
                         for name, meta in self.metadata.items()}

    @classmethod
    def of(cls, result: Any) -> StepResult:
        return result if isinstance(result, StepResult) else cls(metadata=result or {})


@dataclass
class StepContext:
    step: str
    run_id: str
    tracker: DummyRun
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        """Seconds since the step started (secrets and tracking setup included)."""
        return round(time.perf_counter() - self.started, 2)


def secret_fields(cfg: BaseModel) -> dict[str, str]:
    return {k: v for k, v in cfg.model_dump().items() if k.endswith(SECRET_SUFFIX)}


@contextmanager
def step_run(
    step: str, cfg: BaseModel, run_id: str = "", config: Mapping[str, Any] | None = None,
    output_path: str = "",
) -> Iterator[StepContext]:
    """Time the step, load its secrets and open its tracking runs (the trackers `cfg` chooses,
    grouped by `run_id`, the pipeline job; local tracking files go under the run's prefix, found
    from `output_path`, one of the step's outputs). `config` is what the trackers record
    (default: the section, secret names left out)."""
    from components.common.secrets import load_secrets
    from components.common.tracking import tracking_run

    started = time.perf_counter()
    load_secrets(secret_fields(cfg))
    public = dict(config) if config is not None else cfg.model_dump(
        exclude=set(secret_fields(cfg)))
    tracked = cfg if isinstance(cfg, TrackingConfig) else None  # fetch-base-model: no trackers
    with tracking_run(step, public, group=run_id, settings=tracked,
                      output_path=output_path) as tracker:
        yield StepContext(step=step, run_id=run_id, tracker=tracker, started=started)


def section_of(run: Callable[..., Any]) -> type[BaseModel]:
    """The config section a run function takes: the annotation of its first parameter."""
    first = next(iter(inspect.signature(run).parameters))
    section = typing.get_type_hints(run)[first]
    if not (isinstance(section, type) and issubclass(section, BaseModel)):
        raise TypeError(f"{run.__qualname__}: first parameter must be a config section")
    return section


def keyword_names(run: Callable[..., Any]) -> list[str]:
    """The run function's keyword-only parameters: artifact paths and compile-time settings."""
    return [p.name for p in inspect.signature(run).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY]


@dataclass(frozen=True)
class StepIO:
    """A step's artifacts, named by its component body: what `call` reads and writes.

    `inputs` / `outputs`: name -> the KFP artifact (anything with `.path`, `.metadata`, `.uri`);
    the run function receives each path under that name, except the inputs
    `config_from_inputs` turns into a config field (`base_model` <- `base`). `input_metadata`:
    a run keyword -> the input whose metadata it receives. `run_id_from`: the output whose path
    names the pipeline job, passed as `run_id` (an output's, not an input's: a cached input may
    come from an earlier job). The returned metadata lands on `outputs`; the step's peak memory
    on the first of them."""

    inputs: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    config_from_inputs: Mapping[str, str] = field(default_factory=dict)
    input_metadata: Mapping[str, str] = field(default_factory=dict)
    run_id_from: str = ""

    def run_arguments(self) -> dict[str, Any]:
        """The run function's artifact keywords: paths, input metadata, the run id."""
        from components.common.paths import pipeline_job_name

        consumed = set(self.config_from_inputs.values())
        kwargs: dict[str, Any] = {k: "" if a is None  # an unconnected optional input
                                  else [x.path for x in a] if isinstance(a, list) else a.path
                                  for k, a in self.inputs.items() if k not in consumed}
        kwargs.update({k: a.path for k, a in self.outputs.items()})
        kwargs.update({k: dict(self.inputs[n].metadata) for k, n in self.input_metadata.items()})
        if self.run_id_from:
            kwargs["run_id"] = pipeline_job_name(self.outputs[self.run_id_from].path)
        return kwargs


def call(run: Callable[..., Any], arguments: Mapping[str, Any], io: StepIO) -> Any:
    """Run a step inside a KFP component: what every component body does, and all it does.

    `arguments` are the component's arguments (`locals()`); those `io` names are its artifacts.
    Of the rest, the fields of the run's section build its config (one readable InputError if
    any is bad) and the others (compile-time constants) are passed by name. The returned
    metadata lands on the output artifacts; `StepResult.value` is the component's return
    value."""
    section = section_of(run)
    artifacts = set(io.inputs) | set(io.outputs)
    params = {k: v for k, v in arguments.items() if k not in artifacts}
    values = {k: v for k, v in params.items() if k in section.model_fields}
    values.update({f: io.inputs[source].path for f, source in io.config_from_inputs.items()})
    kwargs = {k: v for k, v in params.items() if k not in section.model_fields}
    kwargs.update(io.run_arguments())
    unknown = set(kwargs) - set(keyword_names(run))
    if unknown:
        raise TypeError(f"{run.__qualname__} does not take {sorted(unknown)}")
    result = StepResult.of(run(build(section, values), **kwargs))
    if io.outputs:  # the step's peak memory, on its first output (and in its log)
        peak = peak_memory()
        result.metadata.setdefault(next(iter(io.outputs)), {}).update(peak)
        print(f"peak memory: {peak}", file=sys.stderr, flush=True)
    for name, meta in result.metadata.items():
        meta = dict(meta)
        uri = meta.pop("artifact_uri", None)
        io.outputs[name].metadata.update(meta)
        if uri:
            io.outputs[name].uri = uri
    return result.value


# ------------------------------------------------------------------ running a step on its own


def _python_type(annotation: Any) -> Any:
    """int/float/str/bool for a field's annotation (a Literal counts as its values' type)."""
    if typing.get_origin(annotation) is typing.Literal:
        return type(typing.get_args(annotation)[0])
    return annotation


def make_parser(run: Callable[..., Any]) -> argparse.ArgumentParser:
    """Every field of the run's section as `--field` (or `--field-name`) with its default and
    help, and each artifact path / setting the run takes as its own flag."""
    section = section_of(run)
    doc = (inspect.getdoc(run) or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(
        prog=f"python -m {run.__module__}", description=doc,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    settings = parser.add_argument_group(f"settings ({section.__name__})")
    for name, f in section.model_fields.items():
        kind = _python_type(f.annotation)
        flags = {f"--{name}", f"--{name.replace('_', '-')}"}
        extra: dict[str, Any] = {}
        if typing.get_origin(f.annotation) is typing.Literal:
            extra["choices"] = typing.get_args(f.annotation)
        settings.add_argument(*sorted(flags), dest=name, default=f.default, help=f.description,
                              type=(lambda v: v.lower() in ("1", "true", "yes"))
                              if kind is bool else kind, **extra)
    files = parser.add_argument_group("files and run settings")
    for p in inspect.signature(run).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        required = p.default is inspect.Parameter.empty
        files.add_argument(f"--{p.name}", dest=p.name, required=required,
                           default=None if required else p.default,
                           help="path" if required else None)
    return parser


def main(run: Callable[..., Any], argv: list[str] | None = None) -> None:
    """`python -m components.<step>.<module> ...`: parse, run, print the metadata as JSON.
    Bad input is one line on stderr and exit 2, as in the CLI."""
    args = vars(make_parser(run).parse_args(argv))
    section = section_of(run)
    values = {k: args.pop(k) for k in list(args) if k in section.model_fields}
    try:
        result = run(build(section, values), **{k: v for k, v in args.items() if v is not None})
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if isinstance(result, StepResult):
        result = {"metadata": result.metadata, "value": result.value}
    elif isinstance(result, dict):
        result = StepResult.of(result).metadata
    print(json.dumps(result, indent=2, default=str))
