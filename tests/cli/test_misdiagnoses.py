"""Mistakes that used to be misdiagnosed, each now one line naming the real problem, exit 2."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.submit import app, hydra_override


def one_line(argv: list[str]) -> str:
    result = CliRunner().invoke(app, argv)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.stderr + result.stdout
    return lines[0]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_an_empty_dataset_is_called_empty_not_a_folder(workdir: Path) -> None:
    line = one_line(["--local", "--param", "dataset="])
    assert "dataset: empty; give a JSONL file" in line and "folder" not in line
    assert not (workdir / "runs").exists()


def test_a_run_id_that_cannot_name_a_folder_is_called_run_id(workdir: Path) -> None:
    line = one_line(["--local", "--run-id", "a b/c"])
    assert line.startswith("error: --run-id 'a b/c' cannot name a run folder")
    assert "run_name" not in line and "run name" not in line


def test_a_hydra_override_is_answered_with_the_param_that_does_it(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        hydra_override(["--local", "training.num_epochs=2"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: 'training.num_epochs=2' is not a command; pipeline settings are given as "
        "--param num_train_epochs=2")
    hydra_override(["--local", "--param", "max_steps=2"])  # an option's value: fine
    hydra_override(["predict", "--local", "http://x", "a=b"])  # a subcommand's argument


def test_predict_without_a_scheme_says_so() -> None:
    line = one_line(["predict", "--local", "127.0.0.1:8000", "hi"])
    assert line == ("error: 127.0.0.1:8000 is not an http:// or https:// URL; write e.g. "
                    "http://127.0.0.1:8000")


def test_serve_on_an_interrupted_run_says_interrupted_and_how_to_resume(workdir: Path) -> None:
    run = workdir / "runs" / "r1"
    run.mkdir(parents=True)
    line = one_line(["serve", str(run)])
    assert "has no summary.json" in line and "--resume r1" in line and "gate" not in line
    (run / "summary.json").write_text(json.dumps({"status": "interrupted", "steps": {}}))
    line = one_line(["serve", str(run)])
    assert "was interrupted before export" in line and "--resume r1" in line
    assert "gate" not in line


@pytest.fixture
def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("offline", [True, False])
def test_a_hub_id_without_the_hub_answers_in_seconds(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, closed_port: str, offline: bool
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(workdir / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "ENDPOINT", closed_port)  # refuses at once: no network
    start = time.perf_counter()
    line = one_line(["--local", "--param", "base_model=google/gemma-3-1b-it"])
    assert time.perf_counter() - start < 10
    if offline:
        assert "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in line
    else:
        assert line.startswith("error: base_model google/gemma-3-1b-it cannot be fetched: the "
                               "Hugging Face hub does not answer")
    assert not (workdir / "runs").exists()
