"""Preemption, exactly as a container runtime delivers it: SIGTERM to PID 1 of the container.

The compiled Vertex template's fine-tune command line (the custom job's worker pool: `sh -ec
'...'` with the executor input) runs in a new PID namespace, so `sh` starts as PID 1, as it
does in the container. kfp's own command would keep Python as sh's child, and the signal would
never reach it; ours makes the shell `exec` Python. SIGTERM to PID 1 must end the step with a
complete checkpoint in GCS (the fake-gcs-server emulator), which a restarted worker resumes from.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pipelines.compiler import compile_pipeline
from scripts.compiled_step import executor_env, executor_invocation, load_spec
from tests.gcs_emulator import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
JOB = "preempted-job"
SMALL = {"base_model": "embedded://tiny-gemma3", "dataset": "embedded://dolly-15k-sample.jsonl",
         "max_seq_len": "256"}


def pid_namespaces_work() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "sh", "-c", 'test "$$" = 1'],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def venv_env() -> dict[str, str]:
    """The container's environment, approximated: this venv's python3 first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "PYTHONUNBUFFERED": "1"}


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


@pytest.mark.skipif(not pid_namespaces_work(),
                    reason="needs `unshare --pid --fork` (util-linux, root or user namespaces)")
def test_sigterm_to_pid1_ends_training_with_a_complete_checkpoint(gcs, tmp_path: Path) -> None:
    spec = load_spec(compile_pipeline(tmp_path / "vertex.yaml"))  # the Vertex target
    root = tmp_path / "root"
    root.mkdir()
    for task in ("fetch-base-model", "data-key", "prepare-data"):
        _, argv, _ = executor_invocation(spec, task, root_uri=str(root), job_name=JOB,
                                         overrides=SMALL)
        done = subprocess.run(argv, cwd=root, env=venv_env(), capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    overrides = {**SMALL, "max_steps": "400", "logging_steps": "1", "save_steps": "1000",
                 "checkpoint_uri": "gs://ckpt/runs", "run_name": "pid1",
                 # the CPU stands in for the L4 here; the accelerator check has its own tests
                 "required_accelerator": ""}
    _, argv, _ = executor_invocation(spec, "fine-tune", root_uri=str(root), job_name=JOB,
                                     overrides=overrides)
    assert argv[:2] == ["sh", "-ec"]  # the worker pool's command, as Vertex starts it
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", *argv], cwd=root,
        env={**venv_env(), **executor_env(spec, "fine-tune")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        # PID 1 of the namespace is unshare's child; once it is Python, sh exec'd it.
        pid1 = wait_until(lambda: (children(proc.pid) or [None])[0], 60, "PID 1 of the namespace")
        wait_until(lambda: "components.common.entrypoint" in Path(f"/proc/{pid1}/cmdline")
                   .read_text(), 60, "python3 as PID 1")
        wait_until(lambda: any("'loss'" in line for line in lines), 240, "training steps")
        os.kill(pid1, signal.SIGTERM)  # what the runtime sends on a Spot preemption
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
    log = "".join(lines)
    assert proc.returncode != 0, log[-3000:]  # the step fails, so Vertex restarts the worker
    assert "SIGTERM: saving a checkpoint at the end of this step" in log, log[-3000:]
    stopped = [line for line in lines if "stopped by SIGTERM after step" in line]
    assert stopped, log[-3000:]
    step = int(stopped[0].split("after step ")[1].split("/")[0])

    blobs = {b.name: b for b in gcs.client().list_blobs("ckpt", prefix="runs/pid1/fine-tune/")}
    marker = f"runs/pid1/fine-tune/checkpoints/step-{step:06d}/COMPLETE.json"
    assert marker in blobs, sorted(blobs)
    manifest: dict[str, Any] = json.loads(blobs[marker].download_as_bytes())
    assert manifest["step"] == step and 0 < step < 400
    for rel, meta in manifest["files"].items():  # every file the manifest lists is there, whole
        blob = blobs[f"runs/pid1/fine-tune/checkpoints/step-{step:06d}/{rel}"]
        assert (blob.size, blob.crc32c) == (meta["size"], meta["crc32c"])
    assert "adapter_model.safetensors" in manifest["files"]
    assert "optimizer.pt" in manifest["files"]


@pytest.mark.skipif(not pid_namespaces_work(),
                    reason="needs `unshare --pid --fork` (util-linux, root or user namespaces)")
def test_sigterm_to_pid1_outside_training_ends_the_step_cleanly(tmp_path: Path) -> None:
    """The kernel ignores an unhandled SIGTERM sent to PID 1: without the entry point's handler a
    step that is not training (loading, evaluating) would run on until SIGKILL. With it, the
    step stops at once, its `finally` blocks run, and it exits 143."""
    code = ("import os, time\n"
            "from components.common import entrypoint\n"
            "import signal\n"
            "signal.signal(signal.SIGTERM, entrypoint.terminate)\n"
            "try:\n"
            "    print('pid', os.getpid(), flush=True)\n"
            "    time.sleep(600)\n"
            "finally:\n"
            "    print('cleaned up', flush=True)\n")
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c",
                             code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=venv_env())
    try:
        assert proc.stdout.readline().strip() == "pid 1"
        os.kill(children(proc.pid)[0], signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out
    assert "SIGTERM: stopping the step" in out and "cleaned up" in out
