"""`submit --sweep`: each bad grid is one line and exit 2 before anything runs (nothing
written); a good one is said, with its parallelism, by the dry run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.submit import app


@pytest.mark.parametrize(("args", "says"), [
    (["--sweep", "lora_r=" + ",".join(str(r) for r in range(1, 34))],
     "the sweep is 33 trials, over the cap of 32"),
    (["--sweep", "lora_r=8,16", "--sweep", "learning_rate=1e-4,2e-4,3e-4",
      "--sweep-max-trials", "5"], "the sweep is 6 trials, over the cap of 5"),
    (["--sweep", "lora_rank=8,16"], "--sweep lora_rank: unknown training setting; did you mean"),
    (["--sweep", "learning_rate=1e-4,0"], "--sweep learning_rate=0: learning_rate: Input should "
     "be greater than 0"),
    (["--sweep", "lora_r=8,sixteen"], "--sweep lora_r=sixteen"),
    (["--sweep", "dataset=a.jsonl,b.jsonl"], "--sweep dataset: not a training setting"),
    (["--sweep", "lora_r=8,16", "--param", "lora_r=4"],
     "lora_r given both as --param and as --sweep"),
    (["--sweep", "lora_r"], "is not field=v1,v2"),
])
def test_bad_grid_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         args: list[str], says: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["--local", "--dry-run", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_dry_run_says_the_grid_and_its_parallelism(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["--local", "--dry-run", "--sweep", "lora_r=8,16",
                                      "--sweep", "learning_rate=1e-4,2e-4",
                                      "--sweep-parallelism", "2"])
    assert result.exit_code == 0, result.output
    assert ("sweep: 4 trials, 2 at a time (locally: one after another): lora_r=8, "
            "learning_rate=0.0001; lora_r=8, learning_rate=0.0002; lora_r=16") in result.stderr
