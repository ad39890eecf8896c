"""Pipeline parameters from the command line: `--param name=value`, typed and checked early.

Why: a typo in a parameter name or a rank of 0 must fail in the terminal in a second, not after a
machine has started. Names and types come from the pipeline's typed config, never repeated here.
"""

from __future__ import annotations

import difflib
from typing import Any

from components.common.config import PipelineConfig, build, parameter_defaults
from components.common.errors import InputError


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`["a=1", "b=x=y"]` -> `{"a": "1", "b": "x=y"}`, rejecting names the pipeline lacks."""
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


def resolve_parameters(profile: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Pipeline defaults < profile < --param overrides, validated and typed as the pipeline wants."""
    values = {**parameter_defaults(), **profile, **parse_overrides(overrides)}
    cfg = build(PipelineConfig, values)  # coerces "20" -> 20 and checks every rule
    return cfg.model_dump()


def local_parameters(
    real_defaults: bool, pairs: list[str], run_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`submit --local` parameters, the real defaults used in place of the tiny model's).

    The embedded default is tuned for the tiny model; with another base_model its learning rate,
    lengths and batch shape come from the real defaults (`local_profile`), unless given with
    --param. The second value names those, so the CLI can say which were used."""
    from components.common.config import local_profile

    overrides = parse_overrides(pairs)
    profile, real = ({}, {}) if real_defaults else local_profile(overrides.get("base_model"))
    real = {k: v for k, v in real.items() if k not in overrides}
    # The run id names the checkpoint folder, so the same --run-id finds it again.
    return resolve_parameters({**profile, "run_name": run_id}, pairs), real
