"""select-trial on trial folders as fine-tune writes them, and a trial's settings over the
training config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.common.config import TrainConfig
from components.common.errors import InputError
from components.fine_tune.trial import apply_trial, trial_label, trial_settings
from components.select_trial.select import run_select_trial


def trial_folder(root: Path, name: str, settings: dict, shift: float) -> str:
    folder = root / name
    folder.mkdir()
    losses = [2.0 + shift + 0.3 * (i % 7) for i in range(40)]
    (folder / "validation_scores.json").write_text(json.dumps({
        "row_loss": [x * 10 for x in losses], "row_tokens": [10] * 40,
        "curve": [[5, 2.5 + shift]], "settings": settings}))
    (folder / "adapter_model.safetensors").write_text(name)
    return str(folder)


def test_the_clearly_better_trial_wins_and_its_adapter_goes_on(tmp_path: Path) -> None:
    models = [trial_folder(tmp_path, "a", {"lora_r": 8}, 0.5),
              trial_folder(tmp_path, "b", {"lora_r": 16}, 0.0)]
    result = run_select_trial(None, models=models, winner=str(tmp_path / "w"),
                              sweep=str(tmp_path / "s"))
    assert (tmp_path / "w" / "adapter_model.safetensors").read_text() == "b"
    choice = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert choice["winner"] == "t1" and result.metadata["winner"]["winner"] == "t1"
    assert [t["settings"] for t in choice["trials"]] == [{"lora_r": 8}, {"lora_r": 16}]


def test_a_folder_without_scores_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(InputError, match="validation_scores.json is missing"):
        run_select_trial(None, models=[str(tmp_path / "a")], winner=str(tmp_path / "w"),
                         sweep=str(tmp_path / "s"))


def test_a_trial_overrides_and_is_validated_under_its_own_run_name() -> None:
    cfg = TrainConfig(run_name="r1")
    trial = apply_trial(cfg, trial_settings('{"lora_r": 32, "learning_rate": 1e-4}'), "job")
    assert (trial.lora_r, trial.learning_rate) == (32, 1e-4)
    assert trial.run_name == "r1-" + trial_label({"lora_r": 32, "learning_rate": 1e-4})
    assert apply_trial(cfg, trial_settings(""), "job") is cfg
    with pytest.raises(Exception, match="learning_rate"):
        apply_trial(cfg, {"learning_rate": 0}, "job")
    with pytest.raises(InputError, match="not training settings"):
        apply_trial(cfg, {"dataset": "x"}, "job")
