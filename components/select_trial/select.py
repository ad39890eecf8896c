"""select-trial: read every trial's validation scores, choose the winner (trials.choose, on the
validation split only) and hand its adapter on, with the sweep artifact for the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from components.common.config import NoParameters
from components.common.errors import InputError
from components.common.results import METRICS_FILE
from components.common.step import StepResult

__all__ = ["SCORES_FILE", "SWEEP_FILE", "read_trials", "run_select_trial"]

SCORES_FILE = "validation_scores.json"  # written by fine-tune for each trial
SWEEP_FILE = "sweep.json"


def read_trials(models: list[str]) -> list[Any]:
    """One TrialScores per trial's model folder, named t0, t1, ... in the order given."""
    from components.common.trials import TrialScores

    trials = []
    for i, folder in enumerate(models):
        scores_file = Path(folder) / SCORES_FILE
        if not scores_file.exists():
            raise InputError(f"trial {i}: {scores_file} is missing: was fine-tune given its trial?")
        scores = json.loads(scores_file.read_text())
        metrics_file = Path(folder) / METRICS_FILE
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        trials.append(TrialScores(
            name=f"t{i}", settings=scores["settings"], row_loss=scores["row_loss"],
            row_tokens=scores["row_tokens"],
            train_seconds=float(metrics.get("train_seconds") or 0.0),
            tokens_per_second=float(metrics.get("tokens_per_second") or 0.0),
            curve=[(int(s), float(v)) for s, v in scores.get("curve", [])]))
    return trials


def run_select_trial(cfg: NoParameters, *, models: list[str], winner: str,
                     sweep: str) -> StepResult:
    """The winner's adapter folder copied to `winner` (what evaluate, inference, export read)
    and `sweep.json` (the Choice) in `sweep`."""
    from components.common.trials import choose, to_json

    trials = read_trials(models)
    choice = choose(trials)
    index = [t.name for t in trials].index(choice.winner)
    shutil.copytree(models[index], winner, dirs_exist_ok=True)
    Path(sweep).mkdir(parents=True, exist_ok=True)
    (Path(sweep) / SWEEP_FILE).write_text(to_json(choice))
    print(f"sweep: {len(trials)} trials, winner {choice.winner} "
          f"{json.dumps(trials[index].settings)}: {choice.why}", flush=True)
    meta = {"trials": len(trials), "winner": choice.winner,
            "winner_settings": json.dumps(trials[index].settings)}
    return StepResult(metadata={"winner": {**winner_metadata(models[index]), **meta},
                                "sweep": meta})


def winner_metadata(folder: str) -> dict[str, Any]:
    """The winner's Model metadata, as its fine-tune gave it (metrics and LoRA settings; on
    Vertex a custom job's metadata never reaches the pipeline, so from its files)."""
    folder_path = Path(folder)
    metrics_file, config_file = folder_path / METRICS_FILE, folder_path / "training_config.json"
    meta = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    meta.update({k: config[k] for k in ("lora_r", "lora_alpha", "target_modules") if k in config})
    return {k: v for k, v in meta.items() if isinstance(v, int | float | str | bool)}
