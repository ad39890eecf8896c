"""KFP components generated from the config sections: each parameter is declared once.

Why generated: a lightweight KFP component is a Python function whose *source text* is embedded
in the compiled YAML and whose signature is the component's interface. Written by hand, every
parameter would be repeated in the signature, the call and the config section, with nothing
checking they agree. Here the signature is written from the run function's section (field names,
types and help texts, which become the input descriptions the Vertex console shows), and the body
is the same two lines for every step: import the run function, `call` it with the arguments.

`define_function` keeps the generated source in `linecache`, so `inspect.getsource` (which KFP
uses to embed the function) reads it like any other source file.
"""

from __future__ import annotations

import inspect
import itertools
import linecache
import textwrap
import typing
from collections.abc import Callable, Mapping
from typing import Any

from components.common.images import DEFAULT_IMAGE
from components.common.step import keyword_names, section_of

_counter = itertools.count()


def define_function(name: str, source: str, namespace: dict[str, Any], module: str) -> Any:
    """Compile `source` (one `def name(...)`) into a function whose source `inspect` can read."""
    filename = f"<generated {module}.{name} #{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    # dont_inherit: this module's `from __future__ import annotations` must not turn the
    # generated annotations into strings (KFP reads them as types).
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # noqa: S102
    func = namespace[name]
    func.__module__ = module
    return func


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


def step_component(
    name: str,
    run: Callable[..., Any],
    *,
    inputs: Mapping[str, str | type] | None = None,
    outputs: Mapping[str, str | type] | None = None,
    from_artifacts: Mapping[str, str] | None = None,
    constants: Mapping[str, tuple[type, Any]] | None = None,
    returns: type | None = None,
    summary: str = "",
) -> Any:
    """The KFP component of one step.

    Parameters: every field of `run`'s config section (except those `from_artifacts` fills from
    an input's path), then `constants`: settings fixed at compile time, such as the accelerator a
    GPU step requires (`name: (type, default)`, default `inspect.Parameter.empty` = required).
    Artifacts: `inputs` / `outputs` as `name: KFP type name` (Model, Dataset, Artifact, ...)."""
    from kfp import dsl

    inputs, outputs = dict(inputs or {}), dict(outputs or {})
    from_artifacts, constants = dict(from_artifacts or {}), dict(constants or {})
    section = section_of(run)
    fields = {k: f for k, f in section.model_fields.items() if k not in from_artifacts}
    accepted = set(keyword_names(run))
    missing = (set(inputs) - set(from_artifacts.values()) | set(outputs) | set(constants)) - accepted
    if missing:
        raise TypeError(f"{run.__qualname__} does not take {sorted(missing)}")

    namespace: dict[str, Any] = {}
    exec("from kfp.dsl import *\nfrom typing import *", namespace)  # noqa: S102 - as kfp's own

    def type_name(t: str | type) -> str:
        """A KFP artifact type's name in the source; a class (e.g. gcpc's VertexModel) joins the
        namespace, and KFP adds its import to the embedded program."""
        if isinstance(t, str):
            return t
        namespace[t.__name__] = t
        return t.__name__

    required = [f"{a}: Input[{type_name(t)}]" for a, t in inputs.items()]
    required += [f"{k}: {annotation_source(f.annotation)}" for k, f in fields.items()]
    required += [f"{c}: {t.__name__}" for c, (t, d) in constants.items()
                 if d is inspect.Parameter.empty]
    required += [f"{o}: Output[{type_name(t)}]" for o, t in outputs.items()]
    optional = [f"{c}: {t.__name__} = {d!r}" for c, (t, d) in constants.items()
                if d is not inspect.Parameter.empty]
    described = {k: f.description or "" for k, f in fields.items()}
    doc = args_docstring(summary or (inspect.getdoc(run) or name).split("\n\n")[0], described)
    ret = f" -> {returns.__name__}" if returns else ""
    source = (
        f"def {name}(\n" + "".join(f"    {p},\n" for p in required + optional) + f"){ret}:\n"
        + textwrap.indent(f'"""{doc}\n"""', "    ") + "\n"
        + "    arguments = dict(locals())\n"
        + "    from components.common.step import call\n"
        + f"    from {run.__module__} import {run.__name__}\n\n"
        + f"    return call({run.__name__}, arguments, outputs={tuple(outputs)!r},\n"
        + f"                from_artifacts={from_artifacts!r})\n"
    )
    module = inspect.stack()[1].frame.f_globals.get("__name__", __name__)
    func = define_function(name, source, namespace, module)
    return dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)(func)


def component_parameters(component: Any) -> dict[str, str]:
    """A component's parameter inputs (name -> KFP type) from its spec, artifacts left out."""
    spec = component.component_spec
    return {k: v.type for k, v in (spec.inputs or {}).items() if not _is_artifact(v.type)}


def _is_artifact(type_name: str) -> bool:
    return type_name not in ("String", "Integer", "Float", "Boolean", "List", "Dict")
