"""What `submit --local` adds to summary.json from the evaluate and report steps.

Kept apart from `cli/local_run.py` so that file only calls two functions: per-category metrics
and the headline interval go into the summary, and the HTML report and Markdown summary are
copied next to summary.json where a person looks first.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from components.common.results import Evaluation, gate_sentence


def add_evaluation(summary: dict[str, Any]) -> None:
    """summary["eval"] gains `categories` (base/tuned per category with the interval) and
    `interval` (the headline metric's improvement, > 0 when tuned is better, its 95% interval
    and the gate decision)."""
    path = summary.get("artifacts", {}).get("evaluate.generations")
    if not path or not Path(path).exists():
        return
    results = Evaluation.load(path)
    ev = summary.setdefault("eval", {})
    for name in ("base", "tuned"):
        ev[name] = {**ev.get(name, {}), **getattr(results, name).to_dict()}
    ev["categories"] = {cat: c.to_dict() for cat, c in results.categories.items()}
    ev["interval"] = h = results.headline.to_dict()
    ev["verdict"] = gate_sentence(h["enough_rows"], h["tuned_better"], h["rows"], h["min_rows"])


def publish_reports(summary: dict[str, Any], run_root: Path) -> dict[str, str]:
    """Copy report.html, summary.md and data_card.json next to summary.json; returns their
    paths."""
    out: dict[str, str] = {}
    arts = summary.get("artifacts", {})
    for key, name, kind in (("report.html", "report.html", "html"),
                            ("report.markdown", "summary.md", "markdown"),
                            ("prepare-data.data_card", "data_card.json", "data_card")):
        src = arts.get(key)
        if src and Path(src).is_file():
            dest = run_root / name
            shutil.copyfile(src, dest)
            out[kind] = str(dest)
    return out
