"""The step's top process: a step killed for memory, or failing for it, says so in one line; signals
reach the step itself."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from components.common import entrypoint

OOM_LINE = re.compile(r"^evaluate: out of memory \((.+), peak (\d+\.\d) GiB\); lower "
                      r"generation_batch_size, eval_max_rows or max_seq_len$")


def run_step(mode: str, function: str = "evaluate") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "components.common.entrypoint", "tests.step_stand_ins", mode,
         "--function_to_execute", function],
        capture_output=True, text=True, timeout=120)


def test_a_step_killed_by_sigkill_says_out_of_memory_with_its_peak() -> None:
    done = run_step("sigkill")
    assert done.returncode == entrypoint.OOM_EXIT == 137
    last = done.stderr.strip().splitlines()[-1]
    m = OOM_LINE.match(last)
    assert m, done.stderr
    assert "SIGKILL" in m.group(1) or "OOM killer" in m.group(1)
    assert float(m.group(2)) >= 0.3  # the 300 MiB it held, resident


def test_an_allocation_that_fails_says_out_of_memory() -> None:
    done = run_step("allocate")
    assert done.returncode == 137
    assert "can't allocate memory" in done.stderr  # the traceback stays in the log
    assert OOM_LINE.match(done.stderr.strip().splitlines()[-1]), done.stderr[-2000:]


def test_a_cuda_out_of_memory_error_names_the_settings_of_its_step() -> None:
    done = run_step("cuda", function="fine_tune")
    assert done.returncode == 137
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fine-tune: out of memory (OutOfMemoryError"), last
    assert last.endswith("lower per_device_train_batch_size (raise gradient_accumulation_steps "
                         "to keep the global batch) or max_seq_len")


def test_the_kernels_own_count_names_the_oom_killer(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    counts = iter([41, 42])
    monkeypatch.setattr(entrypoint, "oom_kills", lambda: next(counts))
    code = entrypoint.supervise(["tests.step_stand_ins", "sigkill", "--function_to_execute",
                                 "inference"])
    assert code == 137
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("inference: out of memory (killed by the kernel's OOM killer"), line
    assert line.endswith("lower generation_batch_size or max_new_tokens")


def test_sigterm_to_the_top_process_reaches_the_step() -> None:
    """What a container runtime sends PID 1 on a Spot preemption: the step's `finally` runs and
    it exits 143, as before the step had a parent."""
    proc = subprocess.Popen([sys.executable, "-m", "components.common.entrypoint",
                             "tests.step_stand_ins", "sleep"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().startswith("pid ")
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out
    assert "SIGTERM: stopping the step" in out and "cleaned up" in out


def test_a_step_that_fails_otherwise_keeps_its_status() -> None:
    done = subprocess.run([sys.executable, "-m", "components.common.entrypoint", "json.tool",
                           "/nonexistent"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "out of memory" not in done.stderr  # argparse's own status


def test_the_step_ends_when_its_parent_dies() -> None:
    """A parent killed outright (SIGKILL: no handler of its runs) leaves no step running on: the
    child's end of the pipe closes (EOF) once it has stopped, cleanly."""
    proc = subprocess.Popen([sys.executable, "-m", "components.common.entrypoint",
                             "tests.step_stand_ins", "sleep"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().startswith("pid ")
        proc.kill()
        rest, _ = proc.communicate(timeout=60)  # returns at EOF: the child has exited
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "SIGTERM: stopping the step" in rest and "cleaned up" in rest


@pytest.mark.skipif(not __import__("shutil").which("unshare"), reason="needs util-linux unshare")
def test_as_pid_1_of_a_container_the_step_runs() -> None:
    """In a PID namespace the parent is PID 1, as in a container: the child must not take
    that for a dead parent."""
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no PID namespaces here (needs root or user namespaces)")
    done = subprocess.run(["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m",
                           "components.common.entrypoint", "json.tool", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower() and "SIGTERM" not in done.stderr
