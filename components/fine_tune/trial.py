"""One sweep trial inside fine-tune: its settings over the training config, and its validation
scores (what select-trial compares)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from components.common.config import TrainConfig
from components.common.errors import InputError

SCORES_FILE = "validation_scores.json"


def trial_settings(trial: str) -> dict[str, Any]:
    """The trial's swept fields ({} for a run without a sweep)."""
    if not trial:
        return {}
    settings = json.loads(trial)
    if not isinstance(settings, dict):
        raise InputError(f"trial {trial!r} is not a JSON object of training settings")
    return settings


def trial_label(settings: dict[str, Any]) -> str:
    """A name from the settings alone (not the grid position), so a trial keeps its checkpoint
    folder and tracker run when the grid grows: `lora_r-8_learning_rate-0.0001`."""
    text = "_".join(f"{k}-{v}" for k, v in sorted(settings.items()))
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def apply_trial(cfg: TrainConfig, settings: dict[str, Any], run_id: str) -> TrainConfig:
    """The config this trial trains with: its settings over `cfg`, validated as the section is,
    under a run name of its own (checkpoints of two trials never mix)."""
    if not settings:
        return cfg
    unknown = set(settings) - set(TrainConfig.model_fields)
    if unknown:
        raise InputError(f"trial sets {sorted(unknown)}, which are not training settings")
    run_name = f"{cfg.run_name or run_id}-{trial_label(settings)}"
    return TrainConfig.model_validate({**cfg.model_dump(), **settings, "run_name": run_name})


def write_validation_scores(cfg: TrainConfig, model_dir: str, val_rows: list[dict[str, Any]],
                            settings: dict[str, Any], batch_size: int = 8) -> Path:
    """Per validation row, the kept adapter's summed response-token loss and its token count,
    and the eval curve from training: `validation_scores.json` in the model folder."""
    from components.common.generation import response_losses
    from components.common.modeling import load_base_and_adapter

    model, tokenizer = load_base_and_adapter(model_dir, cfg.base_model)
    model.eval()
    losses = response_losses(model, tokenizer, [r["messages"] for r in val_rows],
                             batch_size=batch_size)
    history_file = Path(model_dir) / "log_history.json"
    history = json.loads(history_file.read_text()) if history_file.exists() else []
    curve = [[int(h["step"]), float(h["eval_loss"])] for h in history if "eval_loss" in h]
    out = Path(model_dir) / SCORES_FILE
    out.write_text(json.dumps({
        "row_loss": [loss for loss, _ in losses], "row_tokens": [n for _, n in losses],
        "curve": curve, "settings": settings,
    }))
    return out
