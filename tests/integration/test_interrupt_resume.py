"""`submit --local` stopped mid fine-tune by a signal sent to its whole process group, as a
terminal sends Ctrl-C (SIGINT) or a dropped SSH session SIGHUP, then `--resume RUN_ID`: one
line, summary status `interrupted`, no lock and no half-written step left, and the resumed run
skips the finished steps and continues from the newest complete checkpoint in the run folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gcs_emulator import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PARAMS = ["--param", "max_steps=30", "--param", "save_steps=5", "--param", "max_new_tokens=4",
          "--param", "eval_max_rows=8"]


def start(runs: Path, run_id: str, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cli.submit", "--local", "--output-dir", str(runs),
           "--run-id", run_id, *PARAMS]
    with log.open("wb") as out:  # its own process group, as a terminal's foreground job
        return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def interrupt_mid_fine_tune(runs: Path, run_id: str, signum: int, log: Path) -> dict:
    proc = start(runs, run_id, log)
    ckpts = runs / run_id / "checkpoints" / run_id / "fine-tune" / "checkpoints"

    def checkpointed() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        return any(ckpts.glob("step-*/COMPLETE.json"))

    wait_until(checkpointed, 600, "the first complete checkpoint", interval=0.5)
    os.killpg(proc.pid, signum)
    assert proc.wait(timeout=120) == 128 + signum, log.read_text()[-3000:]
    with pytest.raises(ProcessLookupError):  # every step process ended with it
        os.killpg(proc.pid, 0)
    return json.loads((runs / run_id / "summary.json").read_text())


def test_sighup_mid_fine_tune_then_resume_finishes_the_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    summary = interrupt_mid_fine_tune(runs, "hup", signal.SIGHUP, tmp_path / "first.log")
    out = (tmp_path / "first.log").read_text()
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGHUP"
    assert summary["steps"]["fine-tune"]["status"] == "interrupted"
    lines = [line for line in out.splitlines() if line.startswith("interrupted during")]
    assert len(lines) == 1, out
    assert "interrupted during fine-tune at step " in lines[0] and "/30; resume with" in lines[0]
    assert f"--output-dir {runs} --resume hup`" in lines[0]
    assert "FAILURE" not in out and "Traceback" not in out
    assert not (runs / "hup" / ".lock").exists()
    pipeline = runs / "hup" / "pipeline"
    assert not list(pipeline.glob("*/fine-tune")), "the unfinished step's outputs are gone"

    second = subprocess.run([sys.executable, "-m", "cli.submit", "--local", "--output-dir",
                             str(runs), "--resume", "hup"], cwd=REPO, capture_output=True,
                            text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    done = json.loads((runs / "hup" / "summary.json").read_text())
    assert done["status"] == "SUCCESS"
    assert done["resumed_from_step"] >= 5 and done["final_step"] == 30
    for step in ("fetch-base-model", "prepare-data"):  # finished before: not run again
        assert done["steps"][step].get("skipped") is True
        assert f"{step}" in second.stderr and "done before: skipped" in second.stderr
    assert "prepare-data.train" in done["artifacts"] and "fine-tune.model" in done["artifacts"]
    assert not (runs / "hup" / ".lock").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_with_one_line_and_a_resumable_folder(
    tmp_path: Path, signum: int
) -> None:
    runs = tmp_path / "runs"
    summary = interrupt_mid_fine_tune(runs, "stop", signum, tmp_path / "out.log")
    out = (tmp_path / "out.log").read_text()
    assert summary["status"] == "interrupted"
    assert summary["signal"] == signal.Signals(signum).name
    assert sum(line.startswith("interrupted during fine-tune at step") for line in
               out.splitlines()) == 1, out
    assert "Traceback" not in out and "FAILURE" not in out
    assert not (runs / "stop" / ".lock").exists()
    assert json.loads((runs / "stop" / "run.json").read_text())["parameters"]["max_steps"] == 30
