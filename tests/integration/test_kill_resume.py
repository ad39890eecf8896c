"""kill -9 the training process, rerun, and end where an uninterrupted run ends.

The child process (`tests/train_driver.py`) is held at a known point by a hook that writes a flag
file and blocks; the test waits for the flag (bounded polling), then SIGKILLs it. Reruns resume
from the newest complete checkpoint in the fake-gcs-server bucket.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from components.common.config import DataConfig, TrainConfig
from components.common.errors import InputError
from components.common.results import TrainMetrics
from components.fine_tune import checkpointing
from components.fine_tune.train import train
from components.prepare_data.prepare import prepare
from tests.adapter_compare import ADAPTER_REL, relative_gap, weights
from tests.conftest import write_jsonl
from tests.gcs_emulator import wait_until

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration
RUN = "kill-test"
# Small enough for ~1 s steps on a busy 2-core machine; dropout on, so RNG restore matters.
CFG = dict(
    base_model="embedded://tiny-gemma3", max_seq_len=128, max_steps=6, learning_rate=3e-3,
    per_device_train_batch_size=2, gradient_accumulation_steps=1, logging_steps=1,
    warmup_ratio=0.0, lora_r=4, lora_alpha=8, lora_dropout=0.1, save_steps=2,
    save_total_limit=2, save_minutes=0, checkpoint_uri="gs://ckpt/root",
)


@pytest.fixture(scope="module")
def rows(tokenizer, tmp_path_factory) -> dict[str, Path]:
    cfg = DataConfig(dataset="embedded://dolly-15k-sample.jsonl",
                     base_model="embedded://tiny-gemma3", max_seq_len=128)
    train_rows = prepare(cfg, tokenizer).splits["train"][:20]  # 10 steps per epoch
    d = tmp_path_factory.mktemp("rows")
    return {"train": write_jsonl(d / "train.jsonl", train_rows),
            "validation": write_jsonl(d / "validation.jsonl", [])}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Child:
    """One training attempt in a child process, with an optional hold point."""

    def __init__(self, tmp: Path, rows: dict[str, Path], name: str, cfg: dict, **hooks) -> None:
        self.signals = tmp / name / "signals"
        spec = {"cfg": cfg, "train": str(rows["train"]), "validation": str(rows["validation"]),
                "out": str(tmp / name / "adapter"), "run_name": RUN, "signals": str(self.signals),
                **hooks}
        spec_path = tmp / name / "spec.json"
        spec_path.parent.mkdir(parents=True)
        spec_path.write_text(json.dumps(spec))
        self.log = tmp / name / "child.log"
        with self.log.open("wb") as out:  # its own session: kill() takes its workers too
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.train_driver", str(spec_path)],
                                         cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_for(self, flag: str, timeout: float = 240) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"child exited {self.proc.returncode} before {flag}:\n"
                                     + self.log.read_text()[-3000:])
            return (self.signals / flag).exists()

        wait_until(ready, timeout, flag)

    def kill(self) -> None:
        """SIGKILL the driver and every process it started (torchrun workers included)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL

    def finish(self, timeout: float = 300) -> TrainMetrics:
        rc = self.proc.wait(timeout=timeout)
        assert rc == 0, self.log.read_text()[-3000:]
        return TrainMetrics.load(self.signals / "result.json")

    @property
    def last_step(self) -> int:
        return int((self.signals / "step").read_text())


def stored_steps(gcs) -> dict[int, bool]:
    """{step: complete} for every checkpoint folder in the bucket."""
    store = checkpointing.CheckpointStore(checkpointing.task_prefix("gs://ckpt/root", RUN))
    return {c.step: c.complete for c in store.scan()}


def assert_same_adapter(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4, msg=k)


def test_kill_then_resume_matches_uninterrupted_run(gcs, rows, tmp_path):
    """Default-run guard: one real SIGKILL mid-training, resume in this process, same weights."""
    child = Child(tmp_path, rows, "killed", CFG, pause_at_step=3)
    # While the child imports torch, train the uninterrupted reference here (no checkpoints).
    ref = train(TrainConfig(**{**CFG, "checkpoint_uri": ""}), read(rows["train"]), [],
                tmp_path / "reference")
    child.wait_for("paused-3")
    killed_at = child.last_step
    child.kill()
    assert stored_steps(gcs) == {2: True}

    resumed = train(TrainConfig(**CFG), read(rows["train"]), [], tmp_path / "resumed",
                    run_name=RUN)
    m = resumed.metrics
    assert m.resumed_from_step == 2 and killed_at - 2 <= CFG["save_steps"]
    assert m.global_step == ref.metrics.global_step == 6
    assert m.checkpoints_saved == 2  # steps 4 and 6
    assert stored_steps(gcs) == {4: True, 6: True}  # keep the last 2
    assert_same_adapter(ref.output_dir, resumed.output_dir)


@pytest.mark.slow
def test_three_kills_one_during_upload_end_at_planned_step(gcs, rows, tmp_path):
    """Kill at step 3, in the middle of checkpoint 4's upload (files there, no marker), and at
    step 5; every rerun resumes from the last complete checkpoint, the last one finishes."""
    cfg = {**CFG, "max_steps": 8, "save_total_limit": 3}
    plan = [  # (hook, flag, expected resume step of the NEXT attempt)
        ({"pause_at_step": 3}, "paused-3", 2),
        ({"hold_marker_at_step": 4}, "holding-4", 2),
        ({"pause_at_step": 7}, "paused-7", 6),
    ]
    for i, (hook, flag, expect) in enumerate(plan):
        child = Child(tmp_path, rows, f"attempt-{i}", cfg, **hook)
        child.wait_for(flag)
        killed_at = child.last_step
        child.kill()
        steps = stored_steps(gcs)
        if "hold_marker_at_step" in hook:
            assert steps[4] is False, "files uploaded, marker not: an incomplete checkpoint"
        newest_complete = max(s for s, ok in steps.items() if ok)
        assert newest_complete == expect and killed_at - newest_complete <= cfg["save_steps"]
        if i == 2:  # this attempt started after the interrupted upload of step 4
            assert "skipping checkpoint" in child.log.read_text()

    final = Child(tmp_path, rows, "final", cfg)
    m = final.finish()
    assert m.resumed_from_step == 6 and m.global_step == 8
    assert all(stored_steps(gcs).values()), "only complete checkpoints remain"
    ref = train(TrainConfig(**{**cfg, "checkpoint_uri": ""}), read(rows["train"]), [],
                tmp_path / "reference")
    assert_same_adapter(ref.output_dir, tmp_path / "final" / "adapter")


def test_sigterm_saves_the_current_step_then_a_rerun_resumes_there(
    gcs, rows, tmp_path, monkeypatch
):
    """The preemption notice (SIGTERM) ends the step with a complete checkpoint, the attempt
    fails with Preempted, and the rerun continues from that very step to the planned end."""
    cfg = TrainConfig(**{**CFG, "save_steps": 100})  # no step-based save before the end
    train_rows = read(rows["train"])
    original = checkpointing.make_callback

    def sigterm_at_step_3(*a, **k):
        cb = original(*a, **k)
        on_step_end = cb.on_step_end

        def wrapped(args, state, control, **kw):
            if state.global_step == 3:
                os.kill(os.getpid(), signal.SIGTERM)  # what Vertex sends before preempting
            return on_step_end(args, state, control, **kw)

        cb.on_step_end = wrapped
        return cb

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(checkpointing, "make_callback", sigterm_at_step_3)
    with pytest.raises(checkpointing.Preempted, match="after step 3"):
        train(cfg, train_rows, [], tmp_path / "a", run_name="sigterm")
    assert signal.getsignal(signal.SIGTERM) is before, "the handler is restored"
    monkeypatch.setattr(checkpointing, "make_callback", original)
    store = checkpointing.CheckpointStore(checkpointing.task_prefix(cfg.checkpoint_uri, "sigterm"))
    assert [(c.step, c.complete) for c in store.scan()] == [(3, True)]

    m = train(cfg, train_rows, [], tmp_path / "b", run_name="sigterm").metrics
    assert m.resumed_from_step == 3 and m.global_step == 6


@pytest.mark.slow  # three trainings, two of them two processes: ~7 min on a busy 2-core machine
def test_two_processes_killed_then_resumed_end_at_the_planned_step(gcs, rows, tmp_path):
    """The same kill -9 with two gloo processes (rank 0 held at step 3, rank 1 waiting for it in
    the next all-reduce): the rerun of both resumes from the last complete checkpoint, which holds
    both ranks' RNG states, and ends at the planned step with the adapter an uninterrupted
    single process with the combined batch trains (relative to its movement, as in
    test_distributed.py)."""
    cfg = {**CFG, "per_device_train_batch_size": 1, "lora_dropout": 0.0}  # 2 x 1 = 2 per step
    child = Child(tmp_path, rows, "killed", cfg, pause_at_step=3, nprocs=2)
    ref = train(TrainConfig(**{**cfg, "checkpoint_uri": "", "per_device_train_batch_size": 2}),
                read(rows["train"]), [], tmp_path / "reference")
    child.wait_for("paused-3")
    killed_at = child.last_step
    child.kill()
    assert stored_steps(gcs) == {2: True}

    final = Child(tmp_path, rows, "resumed", cfg, nprocs=2)
    m = final.finish()
    assert m.resumed_from_step == 2 and killed_at - 2 <= cfg["save_steps"]
    assert m.global_step == ref.metrics.global_step == cfg["max_steps"]
    assert m.world_size == 2 and m.global_batch_size == 2
    assert stored_steps(gcs) == {4: True, 6: True}
    assert "fine-tune.log" not in {p.name for p in (tmp_path / "resumed" / "adapter").iterdir()}
    gap = relative_gap(weights(tmp_path / "resumed" / "adapter"), weights(ref.output_dir))
    assert gap < ADAPTER_REL, f"{gap:.2%} of the adapter's movement"


def test_resuming_with_another_number_of_processes_is_refused(gcs, rows, tmp_path):
    """A checkpoint holds one RNG state per rank and that world's data slices: resuming it with
    another world size would replay other batches, so the fingerprint includes the world size."""
    cfg = TrainConfig(**{**CFG, "max_steps": 2})
    store = checkpointing.CheckpointStore(checkpointing.task_prefix(cfg.checkpoint_uri, RUN))
    train_rows = read(rows["train"])
    assert checkpointing.fingerprint(cfg, train_rows, 2) != checkpointing.fingerprint(cfg, train_rows)
    assert checkpointing.fingerprint(cfg, train_rows, 1) == checkpointing.fingerprint(cfg, train_rows)
    train(cfg, train_rows, [], tmp_path / "one", run_name=RUN)  # leaves checkpoint step 2
    newest = store.scan()[-1]
    with pytest.raises(InputError, match="number of processes"):
        store.problem(newest, checkpointing.fingerprint(cfg, train_rows, 2))
