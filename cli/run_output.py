"""What `submit --local` prints while the pipeline runs, and where everything else goes.

Why: kfp.local prints every step's output and every artifact's metadata (~225 lines for the
embedded default), which buries which step runs, how long it took and whether it went well. So
stdout and stderr go to `steps.log` in the run folder, and the terminal gets a line per step
start and end, the tail of a failed step and a final table (`--verbose` copies the log too).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from components.common.results import (
    AdapterModel,
    Evaluation,
    FetchedModel,
    GateVerdict,
    Interval,
    PeakMemory,
    Predictions,
    PreparedData,
    Registration,
    Scores,
    gate_sentence,
    other_way,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
FAILED_TAIL_LINES = 20  # of a failed step's own output, shown under its line
# The line components.common.entrypoint writes when a step ran out of memory: shown alone.
OUT_OF_MEMORY = re.compile(r"^\S+: out of memory \(")


class StepLog(io.TextIOBase):
    """Stands in for stdout and stderr while kfp.local runs: every line goes to `path` without
    colour codes; with `echo` (--verbose) also, unchanged, to the terminal."""

    def __init__(self, path: Path, echo: TextIO | None = None) -> None:
        self.path = path
        self.file = path.open("a", encoding="utf-8")
        self.echo = echo

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.file.write(ANSI.sub("", text))
        if self.echo is not None:
            self.echo.write(text)
        return len(text)

    def flush(self) -> None:
        self.file.flush()
        if self.echo is not None:
            self.echo.flush()

    def position(self) -> int:
        self.file.flush()
        return self.file.tell()

    def tail_since(self, offset: int, lines: int = FAILED_TAIL_LINES) -> list[str]:
        """The last `lines` non-blank lines written since `offset` (a failed step's output)."""
        self.file.flush()
        with self.path.open(encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            text = f.read()
        return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]

    def close(self) -> None:
        if not self.closed:
            super().close()
            self.file.close()


@contextlib.contextmanager
def runner_output_to(log: StepLog) -> Iterator[None]:
    """stdout and stderr into `log` for the run; kfp.local's warnings that Vertex-only settings
    (machine type, accelerator, CUDA image) do nothing locally, which is expected here, are
    silenced even there."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Task '.*': settings \[.*no effect")
        warnings.filterwarnings("ignore", message=r"You may be attempt?ing to run a task")
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield


def _num(value: Any, fmt: str) -> str:
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return "?"


def _fetch(outs: dict[str, dict[str, Any]], task_dir: Path) -> str:
    m = FetchedModel.read(outs.get("model"))
    return f"{_num(m.size_mb, '.1f')} MB, {_num(m.files, '.0f')} files"


def _prepare(outs: dict[str, dict[str, Any]], task_dir: Path) -> str:
    m = PreparedData.read(outs.get("train"))
    counts = [f"{name} {_num(n, '.0f')}" for name, n in (
        ("train", m.train_rows), ("validation", m.validation_rows), ("test", m.test_rows),
        ("rejected", m.rejected_rows))]
    return "rows: " + ", ".join(counts)


def _fine_tune(outs: dict[str, dict[str, Any]], task_dir: Path) -> str:
    m = AdapterModel.read(outs.get("model"))
    text = (f"loss {_num(m.first_logged_loss, '.3f')} -> {_num(m.last_logged_loss, '.3f')}, "
            f"eval loss {_num(m.eval_loss, '.3f')}, {_num(m.tokens_per_second, ',.0f')} "
            f"tokens/s, {_num(m.global_step, '.0f')} steps")
    if m.resumed_from_step is not None:
        text += f" (resumed at {m.resumed_from_step})"
    return text


def interval_text(h: Interval) -> str:
    """'+0.503 (95%: +0.338 to +0.711)': the improvement, > 0 when tuned is better."""
    return (f"{_num(h.improvement, '+.3f')} (95%: {_num(h.improvement_low, '+.3f')} to "
            f"{_num(h.improvement_high, '+.3f')})")


def _evaluate(outs: dict[str, dict[str, Any]], task_dir: Path) -> str:
    path = task_dir / "generations"
    if not path.is_file():
        return ""
    results = Evaluation.load(path)
    h = results.headline
    metric = h.metric or "loss"
    base, tuned = getattr(results.base, metric, None), getattr(results.tuned, metric, None)
    return (f"test {metric} {_num(base, '.3f')} -> {_num(tuned, '.3f')}, improvement "
            f"{interval_text(h)}")


def _gate(outs: dict[str, dict[str, Any]], task_dir: Path) -> str:
    if "tuned_better" not in outs.get("metrics", {}):
        return ""
    v = GateVerdict.read(outs["metrics"])
    return gate_sentence(v.enough_rows, v.tuned_better, v.rows, v.min_rows)


def _inference(outs: dict[str, dict[str, Any]], task_dir: Path) -> str:
    m = Predictions.read(outs.get("predictions"))
    return (f"{_num(m.rows, '.0f')} rows, {_num(m.tokens_per_second, ',.1f')} "
            f"tokens/s, latency p95 {_num(m.latency_p95_s, '.1f')} s")


def _register(outs: dict[str, dict[str, Any]], task_dir: Path) -> str:
    m = Registration.read(outs.get("registered_model"))
    where = m.resourceName or f"{m.registry or '?'} record"
    return f"{m.display_name or '?'}: {where}"


def _report(outs: dict[str, dict[str, Any]], task_dir: Path) -> str:
    return "HTML report and Markdown summary"


FIGURES: dict[str, Callable[[dict[str, dict[str, Any]], Path], str]] = {
    "fetch-base-model": _fetch, "prepare-data": _prepare, "fine-tune": _fine_tune,
    "evaluate": _evaluate, "gate": _gate, "inference": _inference, "register-model": _register,
    "report": _report,
}


def step_peak(outs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The step's peak memory (MiB), from whichever output carries it."""
    for meta in outs.values():
        if "peak_rss_mb" in meta:
            return PeakMemory.read(meta).peak()
    return {}


def _mib(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def _peak_text(peak: dict[str, float]) -> str:
    if "peak_cuda_allocated_mb" in peak:
        return f", peak {_mib(peak['peak_cuda_allocated_mb'])} on the GPU"
    return f", peak {_mib(peak['peak_rss_mb'])}" if peak else ""


def step_figure(task: str, task_dir: Path | None) -> str:
    """The figure that says how step `task` went and its peak memory, from its
    executor_output.json ('' if none)."""
    if task_dir is None:
        return ""
    try:
        executor = json.loads((task_dir / "executor_output.json").read_text())
        outs = {name: arts["artifacts"][0].get("metadata", {})
                for name, arts in executor.get("artifacts", {}).items()}
        figure = FIGURES[task](outs, task_dir) if task in FIGURES else ""
        return (figure + _peak_text(step_peak(outs))).removeprefix(", ")
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""  # a figure is a courtesy: never let it break the run's output


class StepTimer(logging.Filter):
    """Reads kfp.local's "Executing task 'x'" / "Task 'x' finished with status S" records on the
    root logger: times each step and prints its start and end lines."""

    def __init__(self, console: Console, pipeline_root: Path, log: StepLog | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        self.console = console
        self.pipeline_root = pipeline_root
        self.log = log
        self.clock = clock
        self.started: dict[str, float] = {}
        self.offsets: dict[str, int] = {}
        self.steps: dict[str, dict[str, Any]] = {}
        self.failure: str | None = None  # the one line that says why a step failed, if known

    def filter(self, record: logging.LogRecord) -> bool:
        msg = ANSI.sub("", str(record.getMessage()))
        if m := re.match(r"Executing task '([^']+)'", msg):
            self._start(m.group(1))
        elif m := re.match(r"Task '([^']+)' finished with status (\w+)", msg):
            self.finish_step(m.group(1), m.group(2))
        return True

    def _line(self, mark: str, name: str, rest: str = "") -> None:
        label = f"{name:<16}" if rest else name
        self.console.print(f"{dt.datetime.now():%H:%M:%S} {mark} [bold]{label}[/]{rest}",
                           soft_wrap=True, highlight=False)

    def _start(self, name: str) -> None:
        self.started[name] = self.clock()
        self.offsets[name] = self.log.position() if self.log else 0
        self.steps[name] = {"status": "RUNNING", "seconds": None}
        self._line("[cyan]▶[/]", name)

    def task_dir(self, name: str) -> Path | None:
        """The task's output folder in the newest pipeline run that has it."""
        found = [p.parent for p in self.pipeline_root.glob(f"*/{name}/executor_output.json")]
        return max(found, key=lambda p: p.stat().st_mtime) if found else None

    def finish_step(self, name: str, status: str) -> None:
        now = self.clock()
        seconds = round(now - self.started.get(name, now), 2)
        self.steps[name] = {"status": status, "seconds": seconds}
        if status == "SUCCESS":
            figure = step_figure(name, self.task_dir(name))
            self._line("[green]■[/]", name, f" {seconds:7.1f} s  {figure}".rstrip())
            return
        self._line("[red]■[/]", name, f" {status} after {seconds:.1f} s")
        if self.log is None:
            return
        tail = self.log.tail_since(self.offsets.get(name, 0))
        if oom := [line for line in tail if OUT_OF_MEMORY.match(line)]:
            self.failure = oom[-1]
            self.console.print(f"    {oom[-1]}", style="bold red", soft_wrap=True, markup=False,
                               highlight=False)
            return
        for line in tail:
            self.console.print(f"    {line}", style="dim", soft_wrap=True, markup=False,
                               highlight=False)

    def close_running(self) -> None:
        for name, info in list(self.steps.items()):
            if info["status"] == "RUNNING":
                self.finish_step(name, "FAILURE")


def results_table(summary: dict[str, Any]) -> RenderableType:
    """Base vs tuned on the test split, and the headline interval the gate read."""
    ev = summary.get("eval", {})
    base, tuned = ev.get("base", {}), ev.get("tuned", {})
    scored, split = ev.get("interval", {}).get("rows"), summary.get("test_rows")
    rows = f"{scored} of {split}" if scored not in (None, split) else split  # eval_max_rows
    table = Table(box=box.SIMPLE, title=f"test split, {rows} rows scored", title_justify="left")
    for col in ("", "base", "tuned", "change"):
        table.add_column(col, justify="left" if not col else "right")
    for label, key, fmt in (("loss", "loss", ".3f"), ("perplexity", "perplexity", ".1f"),
                            ("ROUGE-L", "rougeL", ".3f")):
        b, t = base.get(key), tuned.get(key)
        change = _num(t - b, "+" + fmt) if b is not None and t is not None else ""
        table.add_row(label, _num(b, fmt), _num(t, fmt), change)
    if not ev.get("interval"):
        return table
    iv = Interval.read(ev["interval"])
    verdict = (gate_sentence(False, False, iv.rows, iv.min_rows) if not iv.enough_rows else
               "tuned passes the gate" if iv.tuned_better else "tuned does not pass the gate")
    if moved := other_way(iv, Scores.read(base), Scores.read(tuned)):  # never without a word
        verdict += f"; but {', '.join(moved)}: the other way"
    return Group(table, Text(f"{iv.metric} improvement (tuned over base), 95% interval "
                             f"{_num(iv.improvement_low, '+.3f')} to "
                             f"{_num(iv.improvement_high, '+.3f')}: {verdict}"))


def terminal_console() -> Console:
    """A console on the stderr of this moment (before the run redirects it to steps.log)."""
    return Console(file=sys.stderr, soft_wrap=True)
