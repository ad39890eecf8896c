"""The whole DAG through KFP's local runner on the embedded default (shortened), via the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from components.common.modeling import load_model
from components.fine_tune.train import base_weights_digest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("runs")
    proc = subprocess.run(
        [sys.executable, "-m", "cli.submit", "--local", "--output-dir", str(out),
         "--run-id", "e2e", "--param", "max_steps=30", "--param", "max_new_tokens=16"],
        capture_output=True, text=True, timeout=900,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == str(out / "e2e" / "summary.json")
    return json.loads(Path(last).read_text())


def test_every_step_succeeded_and_was_timed(summary):
    assert summary["status"] == "SUCCESS"
    assert set(summary["steps"]) == {"prepare-data", "fine-tune", "evaluate", "inference",
                                     "register-model"}
    for step in summary["steps"].values():
        assert step["status"] == "SUCCESS" and step["seconds"] > 0


def test_row_counts_add_up(summary):
    kept = summary["train_rows"] + summary["val_rows"] + summary["test_rows"]
    assert kept + summary["rejected_rows"] == summary["source_rows"] == 228
    rejected = Path(summary["artifacts"]["prepare-data.rejected"]).read_text().splitlines()
    assert len(rejected) == summary["rejected_rows"]


def test_artifacts_exist(summary):
    for key in ("prepare-data.train", "prepare-data.validation", "prepare-data.test",
                "prepare-data.rejected", "fine-tune.model", "evaluate.generations",
                "inference.predictions"):
        assert Path(summary["artifacts"][key]).exists(), key
    preds = Path(summary["artifacts"]["inference.predictions"]).read_text().splitlines()
    assert len(preds) == summary["test_rows"]
    row = json.loads(preds[0])
    assert {"prompt", "response", "prompt_tokens", "completion_tokens", "latency_s"} <= set(row)


def test_tuned_beats_base_on_test_loss(summary):
    base, tuned = summary["eval"]["base"], summary["eval"]["tuned"]
    for m in (base, tuned):
        assert {"loss", "perplexity", "rougeL"} <= set(m)
    assert tuned["loss"] < base["loss"]


def test_lora_weights_changed_and_base_did_not(summary):
    adapter = Path(summary["artifacts"]["fine-tune.model"])
    weights = load_file(adapter / "adapter_model.safetensors")
    assert all(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)
    fresh = base_weights_digest(load_model("embedded://tiny-gemma3", device="cpu"))
    assert summary["training"]["base_weights_digest_after"] == fresh
