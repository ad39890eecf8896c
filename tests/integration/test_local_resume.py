"""`submit --local --checkpoint-uri`: kill the whole process tree mid-training, rerun the same
command with the same --run-id, and the fine-tune step resumes and finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from components.fine_tune.checkpointing import CheckpointStore, task_prefix
from tests.gcs_emulator import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_killed_local_run_resumes_with_the_same_run_id(gcs, tmp_path):
    cmd = [sys.executable, "-m", "cli.submit", "--local", "--output-dir", str(tmp_path / "runs"),
           "--run-id", "resume-me", "--checkpoint-uri", "gs://ckpt/pipelines",
           "--param", "max_steps=30", "--param", "save_steps=10", "--param", "max_new_tokens=8"]
    store = CheckpointStore(task_prefix("gs://ckpt/pipelines", "resume-me"))

    with (tmp_path / "first.log").open("wb") as log:
        first = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)

    def checkpointed() -> bool:
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        return any(c.complete for c in store.scan())

    wait_until(checkpointed, 600, "the first complete checkpoint", interval=0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)

    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(Path(second.stdout.strip().splitlines()[-1]).read_text())
    assert summary["status"] == "SUCCESS"
    assert summary["resumed_from_step"] >= 10 and summary["final_step"] == 30
    ckpts = store.scan()
    assert ckpts and all(c.complete for c in ckpts) and ckpts[-1].step == 30
