"""`submit --local` refuses bad input with one line, before anything is written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.submit import app


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--param", "lora_rank=4"], "unknown pipeline parameter 'lora_rank'"),
        (["--param", "lora_r=0"], "LoRA rank must be a positive integer"),
        (["--param", "dataset=missing/file.jsonl"], "does not exist"),
        (["--param", "target_modules=c_attn"], "c_attn not found"),
        (["--param", "max_seq_len=16"], "longer than max_seq_len=16"),
        (["--param", "categories=poetry"], "category poetry matches no rows"),
        (["--param", "trackers=wandb,tensorbord"],
         "trackers: unknown tracker tensorbord (did you mean tensorboard?)"),
        (["--param", "mlflow_tracking_uri=https://me:hunter2@mlflow.example.com"],
         "the MLflow URI holds a password"),
    ],
)
def test_bad_input_fails_fast_and_writes_nothing(tmp_path, args, expected):
    result = CliRunner().invoke(app, ["--local", "--output-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0]
    assert not (tmp_path / "runs").exists()


def test_params_lists_defaults():
    result = CliRunner().invoke(app, ["params"])
    assert result.exit_code == 0
    assert "base_model = 'google/gemma-3-1b-it'" in result.output
    assert "[local: 'embedded://tiny-gemma3']" in result.output
