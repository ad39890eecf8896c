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


def compare(estimate: dict[str, Any], training: TrainMetrics,
            cost: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of (what, estimated, actual, actual / estimated); [] without an estimate."""
    if not estimate:
        return []
    rows = [
        ("training tokens", estimate.get("train_tokens"), training.train_tokens),
        ("training tokens/s", estimate.get("train_tokens_per_s"), training.tokens_per_second),
        ("fine-tune training seconds", estimate.get("train_seconds"), training.train_seconds),
        ("GPU seconds, all GPU steps", estimate.get("gpu_seconds"), cost.get("gpu_seconds")),
        ("cost (USD)", estimate.get("usd"), cost.get("gpu_cost_usd")),
    ]
    out = []
    for what, est, actual in rows:
        ratio = actual / est if isinstance(est, int | float) and est and \
            isinstance(actual, int | float) else None
        out.append({"what": what, "estimated": est, "actual": actual, "ratio": ratio})
    return out
