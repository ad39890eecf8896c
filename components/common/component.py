"""KFP component signatures written from the config sections: each parameter is declared once.

A lightweight component's signature is its interface; written by hand it would repeat every
config field unchecked. So `components/<step>/component.py` holds a hand-written `StepSpec` and,
below it, the function `component_source` writes: the section's fields as typed parameters, their
help as `Args:` (what the Vertex console shows), a body that calls `components.common.step.call`.
"""

from __future__ import annotations

import inspect
import textwrap
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.common.step import keyword_names, section_of

REQUIRED = inspect.Parameter.empty
# The line above each component file's generated code; everything from it down is rewritten.
GENERATED_MARKER = "# Generated from the spec(s) above and the config sections by " \
    "scripts/generate_components.py."


@dataclass(frozen=True)
class StepSpec:
    """One step's component, as its component.py declares it; the rest is generated from this.

    `inputs` / `outputs`: artifact name -> KFP artifact class; the run function takes each by
    name as a path. `config_from_inputs`: a config field filled with an input's path instead of a
    parameter (`base_model` <- the fetched `base` folder). `input_metadata`: a run keyword ->
    the input whose metadata it receives. `run_id_from`: the output whose path names the
    pipeline job, passed as `run_id`. `constants`: compile-time settings, `name: (type, default)`
    (`REQUIRED`: no default). `returns`: the component's return type (the gate's verdict)."""

    name: str
    run: Callable[..., Any]
    inputs: Mapping[str, type] = field(default_factory=dict)
    outputs: Mapping[str, type] = field(default_factory=dict)
    config_from_inputs: Mapping[str, str] = field(default_factory=dict)
    input_metadata: Mapping[str, str] = field(default_factory=dict)
    run_id_from: str = ""
    constants: Mapping[str, tuple[type, Any]] = field(default_factory=dict)
    returns: type | None = None
    summary: str = ""
    # Inputs that take a list of artifacts (`dsl.Collected` of a ParallelFor): the run function
    # receives a list of paths.
    collected: tuple[str, ...] = ()
    # Inputs a pipeline may leave unconnected (`Input[T] = None`): the run gets "" for them.
    optional_inputs: Mapping[str, type] = field(default_factory=dict)

    def parameters(self) -> dict[str, Any]:
        """The section's fields that are component parameters (name -> pydantic field)."""
        section = section_of(self.run)
        return {k: f for k, f in section.model_fields.items() if k not in self.config_from_inputs}

    def check(self) -> None:
        """The spec accounts for every keyword of its run function, and names only its own
        artifacts: a mismatch fails when the code is generated, not in a running step."""
        where = f"{self.name}: {self.run.__qualname__}"
        section = section_of(self.run)
        for fld, source in self.config_from_inputs.items():
            if fld not in section.model_fields or source not in self.inputs:
                raise TypeError(f"{where}: config_from_inputs {fld!r} <- {source!r} names no "
                                "field of its section or no input")
        bad_meta = {k: v for k, v in self.input_metadata.items() if v not in self.inputs}
        if bad_meta or (self.run_id_from and self.run_id_from not in self.outputs):
            raise TypeError(f"{where}: input_metadata {bad_meta} or run_id_from "
                            f"{self.run_id_from!r} names no artifact of the step")
        passed = (set(self.inputs) - set(self.config_from_inputs.values())) | set(self.outputs)
        passed |= set(self.optional_inputs)
        passed |= set(self.constants) | set(self.input_metadata)
        passed |= {"run_id"} if self.run_id_from else set()
        taken = set(keyword_names(self.run))
        if passed != taken:
            raise TypeError(f"{where}: the spec passes {sorted(passed - taken)} that it does not "
                            f"take and leaves out {sorted(taken - passed)}")

    def type_names(self) -> set[str]:
        """The names the generated code needs in its module (imported by the hand-written part)."""
        names = {"dsl", "DEFAULT_IMAGE"}
        names |= {"Input"} if self.inputs else set()
        names |= {"Output"} if self.outputs else set()
        names |= {"Input"} if self.optional_inputs else set()
        kinds = (*self.inputs.values(), *self.optional_inputs.values(), *self.outputs.values())
        return names | {t.__name__ for t in kinds}


def annotation_source(annotation: Any) -> str:
    """`int`, `float`, `str` or `bool` for a config field (a Literal is its values' type)."""
    if typing.get_origin(annotation) is typing.Literal:
        annotation = type(typing.get_args(annotation)[0])
    if annotation not in (int, float, str, bool):
        raise TypeError(f"pipeline parameters are int, float, str or bool, not {annotation!r}")
    return annotation.__name__


def args_docstring(summary: str, described: Mapping[str, str]) -> str:
    """A Google-style docstring; KFP copies each `Args:` entry into the input's description."""
    lines = [*textwrap.wrap(" ".join(summary.split()), 92, break_on_hyphens=False), "", "Args:"]
    for name, text in described.items():
        wrapped = textwrap.wrap(" ".join(text.split()) or name, 88, break_on_hyphens=False)
        lines.append(f"    {name}: {wrapped[0]}")
        lines.extend(f"        {more}" for more in wrapped[1:])
    return "\n".join(lines)


def component_source(spec: StepSpec) -> str:
    """The decorated component function of one step, as Python source.

    Parameters, in order: input artifacts, the section's fields, required constants, output
    artifacts, constants with a default. The body hands its arguments and a `StepIO` (the
    artifacts, named) to `call`; KFP embeds this text in the compiled YAML."""
    spec.check()
    fields = spec.parameters()
    constants = spec.constants
    required = [f"{a}: Input[list[{t.__name__}]]" if a in spec.collected
                else f"{a}: Input[{t.__name__}]" for a, t in spec.inputs.items()]
    required += [f"{k}: {annotation_source(f.annotation)}" for k, f in fields.items()]
    required += [f"{c}: {t.__name__}" for c, (t, d) in constants.items() if d is REQUIRED]
    required += [f"{o}: Output[{t.__name__}]" for o, t in spec.outputs.items()]
    optional = [f"{c}: {t.__name__} = {d!r}" for c, (t, d) in constants.items()
                if d is not REQUIRED]
    optional += [f"{a}: Input[{t.__name__}] = None" for a, t in spec.optional_inputs.items()]
    described = {k: f.description or "" for k, f in fields.items()}
    summary = spec.summary or (inspect.getdoc(spec.run) or spec.name).split("\n\n")[0]
    doc = args_docstring(summary, described)
    ret = f" -> {spec.returns.__name__}" if spec.returns else ""
    io = [_keyword("inputs", {n: n for n in (*spec.inputs, *spec.optional_inputs)}),
          _keyword("outputs", {n: n for n in spec.outputs})]
    io += [_keyword("config_from_inputs", {k: repr(v) for k, v in spec.config_from_inputs.items()})
           ] * bool(spec.config_from_inputs)
    io += [_keyword("input_metadata", {k: repr(v) for k, v in spec.input_metadata.items()})
           ] * bool(spec.input_metadata)
    io += [f"run_id_from={spec.run_id_from!r}"] * bool(spec.run_id_from)
    run = spec.run.__name__
    return (
        "@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)\n"
        f"def {spec.name}(\n" + "".join(f"    {p},\n" for p in required + optional) + f"){ret}:\n"
        + textwrap.indent(f'"""{doc}\n"""', "    ") + "\n"
        + "    arguments = dict(locals())\n"
        + "    from components.common.step import StepIO, call\n"
        + f"    from {spec.run.__module__} import {run}\n\n"
        + "    io = StepIO(\n" + "".join(f"        {x},\n" for x in io) + "    )\n"
        + f"    return call({run}, arguments, io)\n"
    )


def _keyword(name: str, items: Mapping[str, str]) -> str:
    """`name={'key': value, ...}` as source (values already source), one entry a line when the
    dict does not fit on one."""
    entries = [f"{k!r}: {v}" for k, v in items.items()]
    line = f"{name}={{{', '.join(entries)}}}"
    if len(line) <= 88:
        return line
    return f"{name}={{\n" + "".join(f"            {e},\n" for e in entries) + "        }"


def generated_tail(specs: list[StepSpec]) -> str:
    """What follows the hand-written part of a component file: the marker and the functions."""
    sections = sorted({section_of(s.run).__name__ for s in specs})
    header = (f"{GENERATED_MARKER}\n# Edit the specs or {', '.join(sections)}, not what follows.\n"
              "# Every pipeline build (compile.py, submit --local) rewrites it when stale.\n")
    return header + "\n\n".join(component_source(s) for s in specs)


def component_parameters(component: Any) -> dict[str, str]:
    """A component's parameter inputs (name -> KFP type) from its spec, artifacts left out."""
    spec = component.component_spec
    return {k: v.type for k, v in (spec.inputs or {}).items() if not _is_artifact(v.type)}


def _is_artifact(type_name: str) -> bool:
    return type_name not in ("String", "Integer", "Float", "Boolean", "List", "Dict")
