"""A sweep's grid from `--sweep field=v1,v2`: every value checked as a single value would be,
before anything runs."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from components.common.errors import InputError

DEFAULT_MAX_TRIALS = 32


def training_fields() -> list[str]:
    """The fields a sweep may vary: fine-tune's own settings, not those it shares with other
    steps (model, sequence length, seed, run name, trackers) nor where checkpoints go."""
    from components.common.config import (
        CommonConfig,
        RunNameField,
        TrackingConfig,
        TrainConfig,
    )

    shared = {*CommonConfig.model_fields, *RunNameField.model_fields,
              *TrackingConfig.model_fields, "checkpoint_uri"}
    return [f for f in TrainConfig.model_fields if f not in shared]


def parse_sweep(pairs: Sequence[str]) -> dict[str, list[str]]:
    """`["lora_r=8,16", "learning_rate=1e-4"]` -> {"lora_r": ["8", "16"], ...}, refusing a
    field that is not a training setting."""
    import difflib

    from components.common.config import PipelineConfig

    allowed = training_fields()
    out: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, values = (x.strip() for x in pair.partition("="))
        items = [v.strip() for v in values.split(",")]
        if not sep or not name or not all(items):
            raise InputError(f"--sweep {pair!r} is not field=v1,v2,...; e.g. --sweep lora_r=8,16")
        if name in out:
            raise InputError(f"--sweep {name} is given twice; list its values once: "
                             f"--sweep {name}={','.join(out[name] + items)}")
        if name not in allowed:
            if name in PipelineConfig.model_fields:
                raise InputError(f"--sweep {name}: not a training setting (a sweep varies "
                                 f"fine-tune only; e.g. {', '.join(allowed[:4])})")
            close = difflib.get_close_matches(name, allowed, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see `submit params`"
            raise InputError(f"--sweep {name}: unknown training setting{hint}")
        out[name] = items
    return out


def build_grid(pairs: Sequence[str], params: Mapping[str, Any], overridden: Iterable[str] = (),
               max_trials: int = DEFAULT_MAX_TRIALS) -> list[dict[str, Any]]:
    """Every combination of the swept values, in the order given (the last field fastest),
    each validated over the run's parameters by the training section's own validators."""
    from components.common.config import TrainConfig, build

    swept = parse_sweep(pairs)
    both = sorted(set(swept) & set(overridden))
    if both:
        raise InputError(f"{', '.join(both)} given both as --param and as --sweep; keep one")
    size = 1
    for values in swept.values():
        size *= len(values)
    if size > max_trials:
        raise InputError(f"the sweep is {size} trials, over the cap of {max_trials}; narrow it "
                         f"or raise --sweep-max-trials")
    for name, values in swept.items():  # each value alone first: the message names it
        for v in values:
            try:
                build(TrainConfig, {**params, name: v})
            except InputError as exc:
                raise InputError(f"--sweep {name}={v}: {exc}") from None
    grid = []
    for combo in itertools.product(*swept.values()):
        typed = build(TrainConfig, {**params, **dict(zip(swept, combo, strict=True))})
        grid.append({k: getattr(typed, k) for k in swept})
    return grid


def trial_items(grid: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The ParallelFor's items: each trial's settings as JSON (sorted keys), what fine-tune's
    `trial` receives. Nothing else: a trial's cache key is the single run's plus its settings,
    so a grown grid reuses every trial it already ran."""
    return tuple(json.dumps(dict(t), sort_keys=True) for t in grid)
