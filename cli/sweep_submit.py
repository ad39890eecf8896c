"""`--sweep` on every path: the grid checked and said before anything runs, and on Vertex or
KFP a template of its own (the default one stays the single-setting DAG)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.app import Options, note

SWEEP_SETTINGS = ("sweep", "sweep_parallelism")


def sweep_items(opts: Options, params: dict[str, Any]) -> tuple[str, ...]:
    """The sweep's trials (pipelines/sweep.py), checked before anything runs; said once."""
    if not opts.sweep:
        return ()
    from pipelines.settings import parse_pairs
    from pipelines.sweep import build_grid, trial_items

    grid = build_grid(opts.sweep, params, parse_pairs(opts.params), opts.sweep_max_trials)
    at_once = opts.sweep_parallelism or len(grid)
    note(f"sweep: {len(grid)} trials, {at_once} at a time"
         + (" (locally: one after another)" if opts.local or opts.batch else "") + ": "
         + "; ".join(", ".join(f"{k}={v}" for k, v in t.items()) for t in grid))
    return trial_items(grid)


def with_sweep(opts: Options, resolve: Callable[[dict[str, Any]], Any]) -> Any:
    """The run resolved (`resolve(extra compile settings)`), then, with --sweep off the local
    runner, resolved again with the grid among its compile settings."""
    r = resolve({})
    if not opts.sweep or r.settings.target == "local":
        return r
    return resolve({"sweep": sweep_items(opts, r.params),
                  "sweep_parallelism": opts.sweep_parallelism})


def without_sweep(stamp_settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """A template's compile settings minus its sweep: a sweep is asked for anew every time."""
    if stamp_settings is None:
        return None
    return {k: v for k, v in stamp_settings.items() if k not in SWEEP_SETTINGS}


def sweep_template(r: Any, named: str | None = None) -> str | None:
    """The sweep's template, compiled next to the default one (`dolly-lora-sweep.yaml`) for
    this grid; None without a sweep."""
    if not r.settings.sweep:
        return None
    if named:
        from components.common.errors import InputError

        raise InputError("--sweep compiles its own template; leave out --template")
    from pipelines.compiler import DEFAULT_TEMPLATES, compile_pipeline

    default = Path(DEFAULT_TEMPLATES[r.settings.target])
    path = default.with_name(f"{default.stem}-sweep{default.suffix}")
    compile_pipeline(path, r.settings)
    note(f"compiled {path}: the sweep's {len(r.settings.sweep)} trials")
    return str(path)


def sweep_cost(r: Any, est: Any) -> Any:
    """`est` (the single run's, with its deadlines) widened to every trial of the sweep."""
    if not r.settings.sweep or est is None:
        return est
    import json

    from pipelines.settings import run_estimate
    from planning.cost import sweep_estimate

    price = r.overrides.get("gpu_hourly_usd")
    trials = {}
    for item in r.settings.sweep:
        settings = json.loads(item)
        name = ",".join(f"{k}={v}" for k, v in settings.items())
        trials[name] = run_estimate(r.settings, {**r.params, **settings}, price=price)
    return sweep_estimate(est, trials)
