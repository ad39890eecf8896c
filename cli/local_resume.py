"""A local run that survives Ctrl-C, SIGTERM and a dropped SSH session (SIGHUP), and
`submit --local --resume RUN_ID` that finishes it.

Why here and not in the steps alone: the terminal sends SIGINT/SIGHUP to the whole process
group, so each step stops by itself (fine-tune after saving a checkpoint); this process must
not die first, or the lock, the summary and the line that says how to resume are lost.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from cli.run_output import StepLog, StepTimer
from components.common.errors import InputError

SPEC = "run.json"  # the run's own parameters, written before the pipeline starts
INTERRUPTED = "interrupted"  # summary.json's status of a run stopped by a signal
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A signal stopped the run; `code` is the exit status a shell gives such a process."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.code = signum, 128 + signum


class Interrupts:
    """SIGINT, SIGTERM and SIGHUP while a local run lasts. Before the pipeline starts they stop
    at once (`Interrupted`); while a step runs (`deferred`) they are only noted: the step gets
    the same signal from the terminal and ends by itself, and the next step never starts."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._on_signal) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if not self.deferred:
            raise Interrupted(self.signum)

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


class ResumableTimer(StepTimer):
    """StepTimer that also reads kfp.local's cache hits (a step that finished before a resume)
    and stops the pipeline before its next step once a signal came."""

    def __init__(self, *args: Any, interrupts: Interrupts, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.interrupts = interrupts
        self.disk_full: str | None = None  # the step that stopped on a full disk

    def filter(self, record: Any) -> bool:
        msg = str(record.getMessage())
        if msg.startswith("Task ") and " cache hit " in msg:
            name = msg.split()[1].strip("'")
            self.steps[name] = {"status": "SUCCESS", "seconds": 0.0, "skipped": True}
            self._line("[green]■[/]", name, "   done before: skipped")
            return True
        if msg.startswith("Executing task "):
            self.interrupts.check()
        return super().filter(record)

    def finish_step(self, name: str, status: str) -> None:
        if status != "SUCCESS" and self.log is not None and any(
                line.startswith(f"{name}: disk full") for line in self.log.tail_since(
                    self.offsets.get(name, 0))):
            self.disk_full = name
            self._line("[red]■[/]", name, " stopped: the disk is full")
            self.steps[name] = {"status": "FAILURE", "seconds": None}
            return
        if self.interrupts.signum is None or status == "SUCCESS":
            super().finish_step(name, status)
            return
        now = self.clock()
        seconds = round(now - self.started.get(name, now), 2)
        self.steps[name] = {"status": INTERRUPTED, "seconds": seconds}
        self._line("[yellow]■[/]", name, f" interrupted after {seconds:.1f} s")


class SafeStepLog(StepLog):
    """steps.log that stops writing, instead of raising, when the disk is full: the run then
    ends with its one line, not a traceback from its own log writer."""

    full = False

    def write(self, text: str) -> int:
        if not self.full:
            try:
                return super().write(text)
            except OSError:
                self.full = True
        return len(text)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:
            self.full = True

    def position(self) -> int:
        try:
            return super().position()
        except OSError:
            self.full = True
            return 0


def disk_full_line(step: str, run_root: Path, need: int) -> str:
    from cli.local_checks import MB, free_bytes

    _, free = free_bytes(run_root)
    return (f"{step}: the disk of {run_root} is full ({free / MB:.0f} MB free, the run needs "
            f"about {max(1, need / MB):.0f} MB more); free some space, then resume with "
            f"`uv run submit --local --output-dir {run_root.parent} --resume {run_root.name}`")


def checkpoint_uri(run_root: Path) -> str:
    """Where a local run's fine-tune checkpoints go unless --checkpoint-uri says otherwise."""
    return str(run_root / "checkpoints")


def interrupted_line(summary: dict[str, Any], run_id: str, output_dir: Path) -> str:
    """"interrupted during fine-tune at step 40/200; resume with `...`"."""
    steps = summary.get("steps", {})
    during = next((n for n, s in steps.items() if s.get("status") == INTERRUPTED), None)
    where = f" during {during}" if during else ""
    from components.fine_tune.checkpointing import newest_complete

    params = summary["parameters"]
    if during == "fine-tune" and (found := newest_complete(params["checkpoint_uri"],
                                                          params["run_name"])):
        step, total = found
        where += f" at step {step}/{total}" if total else f" at step {step}"
    flag = "" if output_dir == Path("runs") else f" --output-dir {output_dir}"
    return f"interrupted{where}; resume with `uv run submit --local{flag} --resume {run_id}`"


def save_spec(run_root: Path, params: dict[str, Any], defaults: dict[str, Any]) -> None:
    from components.common.storage import upload_bytes

    upload_bytes(json.dumps({"parameters": params, "real_defaults_used": defaults},
                            indent=2, default=str).encode(), str(run_root / SPEC))


def load_spec(output_dir: Path, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters of the run to resume, or one line saying why it cannot be resumed."""
    run_root = output_dir / run_id
    if not run_root.is_dir():
        runs = sorted(p.name for p in output_dir.glob("*/") if (p / SPEC).exists())[-3:]
        hint = f" (the newest there: {', '.join(runs)})" if runs else ""
        raise InputError(f"--resume {run_id}: there is no run folder {run_root}{hint}; give the "
                         "run id that submit --local printed, and its --output-dir")
    spec = run_root / SPEC
    if not spec.exists():
        raise InputError(f"--resume {run_id}: {run_root} has no {SPEC} (the run stopped before "
                         "its pipeline started); start it again without --resume")
    summary = run_root / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("status") == "SUCCESS":
        raise InputError(f"--resume {run_id}: that run already finished ({summary}); nothing "
                         "to resume")
    saved = json.loads(spec.read_text())
    return saved["parameters"], saved.get("real_defaults_used") or {}


def drop_unfinished_steps(pipeline_root: Path) -> None:
    """Remove the output folders of steps that never finished (no executor_output.json), in
    every earlier pipeline run of the folder: no half-written artifact is taken for a whole
    one, by the summary or by anyone reading the folder."""
    for task_dir in pipeline_root.glob("*/*/"):
        if task_dir.name.startswith(".") or (task_dir / "executor_output.json").exists():
            continue
        shutil.rmtree(task_dir, ignore_errors=True)
