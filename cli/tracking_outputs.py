"""What `submit --local` says about tracking: which trackers received each step's run, and how
to open them (the `tensorboard --logdir` and `mlflow ui` commands for the files next to
summary.json).

Kept apart from `cli/local_run.py` so that file only calls two functions.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from components.common.config import split_csv

# The output whose metadata carries each step's tracking report.
STEP_OUTPUTS = {
    "prepare-data": "train",
    "fine-tune": "model",
    "evaluate": "generations",
    "inference": "predictions",
    "report": "html",
}


def tracking_summary(meta: dict[str, dict[str, Any]], params: dict[str, Any],
                     run_root: Path) -> dict[str, Any]:
    """summary["tracking"]: the trackers chosen, each step's report (received / failed / where),
    which steps each tracker received, and the commands that open the local files."""
    chosen = split_csv(str(params.get("trackers", "")))
    steps = {step: meta.get(step, {}).get(out, {}).get("tracking")
             for step, out in STEP_OUTPUTS.items()}
    steps = {k: v for k, v in steps.items() if v}
    received = {t: [s for s, r in steps.items() if t in r.get("received", [])] for t in chosen}
    out: dict[str, Any] = {"trackers": chosen, "received": received, "steps": steps}
    tb = run_root / "tensorboard"
    if "tensorboard" in chosen and tb.is_dir():
        out["tensorboard_logdir"] = str(tb)
        out["tensorboard_command"] = f"tensorboard --logdir {shlex.quote(str(tb))}"
    uri = next((r.get("where", {}).get("mlflow") for r in steps.values()
                if r.get("where", {}).get("mlflow")), None)
    if "mlflow" in chosen and uri:
        out["mlflow_tracking_uri"] = uri
        if uri.startswith("sqlite:///"):
            out["mlflow_command"] = f"mlflow ui --backend-store-uri {shlex.quote(uri)}"
    return out


def tracking_lines(tracking: dict[str, Any]) -> list[str]:
    """What to print after the run: one line per tracker, and how to open it."""
    lines = []
    for name, steps in tracking.get("received", {}).items():
        missed = [s for s, r in tracking.get("steps", {}).items()
                  if name in r.get("chosen", []) and name not in r.get("received", [])]
        lines.append(f"{name}: {len(steps)} step(s) received the run"
                     + (f"; not received by {', '.join(missed)} (see summary.json)" if missed
                        else ""))
    for key in ("tensorboard_command", "mlflow_command"):
        if key in tracking:
            lines.append(tracking[key])
    return lines
