"""The pre-run cost estimate next to what the run really took.

`submit` computes the estimate before it sends the run (planning/cost.py) and passes it as the
`cost_estimate` parameter (JSON); this puts each estimated figure beside the measured one, with
their ratio, so the throughput and price tables can be corrected from real runs.
"""

from __future__ import annotations

import json
from typing import Any

from components.common.results import TrainMetrics


def parse(text: str) -> dict[str, Any]:
    """The estimate, or {} when there is none (a local run, an older submit) or it is not JSON."""
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def step_prices(estimate: dict[str, Any]) -> dict[str, float]:
    """USD/h of each GPU step's own machine, as the estimate priced it ({} without one)."""
    steps = estimate.get("steps")
    return {k: float(v["usd_per_hour"]) for k, v in steps.items()} if isinstance(steps, dict) \
        else {}


def compare(estimate: dict[str, Any], training: TrainMetrics,
            cost: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of (what, estimated, actual, actual / estimated); [] without an estimate."""
    if not estimate:
        return []
    measured = {s["step"]: s["seconds"] for s in cost.get("steps", [])}
    rows = [
        ("training tokens", estimate.get("train_tokens"), training.train_tokens),
        ("training tokens/s", estimate.get("train_tokens_per_s"), training.tokens_per_second),
        ("fine-tune training seconds", estimate.get("train_seconds"), training.train_seconds),
        ("GPU seconds, all GPU steps", estimate.get("gpu_seconds"), cost.get("gpu_seconds")),
        *((f"{step} seconds (start-up included)", v["run_seconds"] + v["startup_seconds"],
           measured.get(step)) for step, v in (estimate.get("steps") or {}).items()),
        ("cost (USD)", estimate.get("usd"), cost.get("gpu_cost_usd")),
        ("worst case (USD): every step to its timeout", estimate.get("worst_usd"), None),
    ]
    rows = [r for r in rows if r[1] is not None or r[2] is not None]
    out = []
    for what, est, actual in rows:
        ratio = actual / est if isinstance(est, int | float) and est and \
            isinstance(actual, int | float) else None
        out.append({"what": what, "estimated": est, "actual": actual, "ratio": ratio})
    return out
