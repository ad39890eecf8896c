"""What `submit --local` adds to summary.json from a sweep: every trial with its validation
interval and what it cost, and the winner (the one trial evaluated on test and registered)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SWEEP_KEY = "select-trial.sweep"


def add_sweep(summary: dict[str, Any]) -> None:
    """summary["sweep"]: trials (settings, validation loss, interval vs the best, training and
    step seconds, cost at the run's GPU price), the winner and why. Nothing without a sweep."""
    arts = summary.get("artifacts", {})
    folder = arts.get(SWEEP_KEY)
    if not folder or not (Path(folder) / "sweep.json").is_file():
        return
    choice = json.loads((Path(folder) / "sweep.json").read_text())
    hourly = float(summary.get("parameters", {}).get("gpu_hourly_usd") or 0.0)
    folders = sorted((k for k in arts if k.endswith(".fine-tune") and "iteration-" in k),
                     key=lambda k: int(k.split("iteration-")[1].split(".")[0]))
    trials = []
    for i, t in enumerate(choice["trials"]):
        metrics_file = (Path(arts[folders[i]]) / "model" / "metrics.json"
                        if i < len(folders) else None)
        metrics = json.loads(metrics_file.read_text()) if metrics_file and \
            metrics_file.is_file() else {}
        seconds = float(metrics.get("step_seconds") or t.get("train_seconds") or 0.0)
        trials.append({
            "name": t["name"], "settings": t["settings"],
            "validation_loss": t["validation_loss"], "diff_vs_best": t["diff_vs_best"],
            "overlaps_best": t["overlaps_best"], "train_seconds": t.get("train_seconds"),
            "tokens_per_second": t.get("tokens_per_second"), "step_seconds": seconds,
            "cost_usd": round(seconds * hourly / 3600, 4),
            "winner": t["name"] == choice["winner"],
        })
    summary["sweep"] = {
        "trials": trials, "winner": choice["winner"], "why": choice["why"],
        "metric": choice["metric"], "test_split_used": choice.get("test_split_used", False),
        "evaluated_on_test": [choice["winner"]],
        "registered": [choice["winner"]] if summary.get("merged_model") else [],
        "cost_usd": round(sum(t["cost_usd"] for t in trials), 4),
        "gpu_hourly_usd": hourly,
    }
