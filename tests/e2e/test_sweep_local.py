"""A local sweep of 2 trials on the tiny model, through the CLI: both trials trained and scored
on validation, one winner, and only the winner evaluated on test, exported and registered; one
TensorBoard folder and one W&B run (in the sweep's group) per trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.wandb_reader import read_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "WANDB_MODE": "offline"}
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR",
                "WANDB_CONFIG_DIR"):
        env[var] = str(out / "wandb-home")
    proc = subprocess.run(
        [sys.executable, "-m", "cli.submit", "--local", "--output-dir", str(out),
         "--run-id", "sw", "--sweep", "lora_r=4,8", "--sweep-parallelism", "1",
         "--param", "max_steps=4", "--param", "max_new_tokens=8",
         "--param", "trackers=wandb,tensorboard"],
        capture_output=True, text=True, timeout=900, env=env,
        cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return out / "sw", json.loads((out / "sw" / "summary.json").read_text())


def test_two_trials_one_winner_only_it_on_test(sweep_run) -> None:
    run, summary = sweep_run
    sweep = summary["sweep"]
    assert [t["settings"] for t in sweep["trials"]] == [{"lora_r": 4}, {"lora_r": 8}]
    for t in sweep["trials"]:
        d = t["diff_vs_best"]
        assert d["low"] <= d["estimate"] <= d["high"] and t["validation_loss"] > 0
        assert t["step_seconds"] > 0 and t["cost_usd"] > 0
    assert [t["winner"] for t in sweep["trials"]].count(True) == 1
    assert sweep["test_split_used"] is False
    assert sweep["cost_usd"] == pytest.approx(sum(t["cost_usd"] for t in sweep["trials"]))
    arts = {k: Path(v) for k, v in summary["artifacts"].items()}
    root = arts["export.adapter"].parent.parent
    # one evaluate, one export, one register: outside the loop, on the winner's adapter
    assert sorted(p.parent.name for p in root.rglob("evaluate/generations")) == ["evaluate"]
    assert len(list(root.rglob("register-model"))) == 1
    winner = int(sweep["winner"][1:])
    trial_adapter = root / f"for-loop-2-iteration-{winner}" / "fine-tune" / "model"
    exported = arts["export.adapter"]
    name = "adapter_model.safetensors"
    assert (exported / name).read_bytes() == (trial_adapter / name).read_bytes()
    other = root / f"for-loop-2-iteration-{1 - winner}" / "fine-tune" / "model" / name
    assert other.read_bytes() != (trial_adapter / name).read_bytes()
    assert summary["merged_model"] and summary["eval"]["tuned"]
    # the training block is the winner's
    winner_metrics = json.loads((trial_adapter / "metrics.json").read_text())
    assert summary["training"]["eval_loss"] == pytest.approx(winner_metrics["eval_loss"])


def test_one_tracker_run_per_trial(sweep_run) -> None:
    run, _ = sweep_run
    folders = {p.name for p in run.rglob("fine-tune-*") if p.is_dir()}
    assert {"fine-tune-lora_r-4", "fine-tune-lora_r-8"} <= folders
    groups = {}
    for f in run.parent.rglob("run-*.wandb"):
        r = read_run(f)
        groups[r.job_type] = r.group
    trials = {n: g for n, g in groups.items() if n.startswith("fine-tune")}
    assert sorted(trials) == ["fine-tune-lora_r-4", "fine-tune-lora_r-8"]
    # one group for the sweep: the trials' and the winner's evaluation
    assert set(trials.values()) == {groups["evaluate"]} and groups["evaluate"]
