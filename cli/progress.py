"""The running step's progress while `submit --local` runs, from the steps' own progress lines
(`components.common.progress`): one live rich line per step on a terminal, a plain line at most
every `EVERY_S` seconds elsewhere, and the same thinned lines in steps.log."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from cli.local_resume import SafeStepLog
from cli.run_output import ANSI
from components.common.progress import ENV_EVERY, EVERY_S, PREFIX, Record, Throttle, parse

TERMINAL_EVERY_S = 1.0  # what the steps are asked for when a live line shows them
_FINISHED = re.compile(r"Task '([^']+)' finished with status")


def extra(r: Record) -> str:
    """'loss 1.830  4,210 tok/s  eta 6m12s  (tuned model)': what the bar itself does not show."""
    parts = [f"loss {r.loss:.3f}" if r.loss is not None else "",
             f"{r.tokens_per_second:,.0f} tok/s" if r.tokens_per_second is not None else "",
             f"eta {r.eta}" if r.eta else "", f"({r.note})" if r.note else ""]
    return "  ".join(p for p in parts if p)


class ProgressView(logging.Filter):
    """Shows progress records on `console`. A logging filter on the root logger too: kfp.local's
    "Task 'x' finished" record takes step x's live line away."""

    def __init__(self, console: Console, every: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.console, self.every, self.clock = console, every, clock
        self.live = console.is_terminal
        self.bars = Progress(
            TextColumn("  [cyan]…[/] [bold]{task.description}"), BarColumn(bar_width=24),
            MofNCompleteColumn(), TextColumn("{task.fields[extra]}"), TimeElapsedColumn(),
            console=console, redirect_stdout=False, redirect_stderr=False, transient=True)
        self.tasks: dict[str, TaskID] = {}
        self.throttles: dict[str, Throttle] = {}

    def show(self, r: Record) -> None:
        if not self.live:
            if self.throttles.setdefault(r.step, Throttle(self.every)).due(self.clock(), r.last):
                self.console.print(r.line(), markup=False, highlight=False, soft_wrap=True)
            return
        if r.step not in self.tasks:
            if not self.tasks:
                self.bars.start()
            self.tasks[r.step] = self.bars.add_task(f"{r.step} {r.unit}", total=r.total, extra="")
        self.bars.update(self.tasks[r.step], completed=r.done, total=r.total, extra=extra(r))

    def end(self, step: str) -> None:
        self.throttles.pop(step, None)
        if (task := self.tasks.pop(step, None)) is not None:
            self.bars.remove_task(task)
            if not self.tasks:
                self.bars.stop()

    def filter(self, record: logging.LogRecord) -> bool:
        if m := _FINISHED.match(ANSI.sub("", str(record.getMessage()))):
            self.end(m.group(1))
        return True

    def close(self) -> None:
        for step in list(self.tasks):
            self.end(step)

    @contextlib.contextmanager
    def steps_env(self) -> Iterator[None]:
        """On a terminal the steps print a line every TERMINAL_EVERY_S (kfp.local's steps
        inherit this process's environment); elsewhere they keep EVERY_S."""
        before = os.environ.get(ENV_EVERY)
        if self.live:
            os.environ[ENV_EVERY] = str(TERMINAL_EVERY_S)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(ENV_EVERY, None)
            else:
                os.environ[ENV_EVERY] = before


class ProgressStepLog(SafeStepLog):
    """steps.log that hands progress lines to a ProgressView and keeps one in the log at most
    every `every` seconds per step (the last always); every other line as before."""

    def __init__(self, path: Path, view: ProgressView, echo: TextIO | None = None) -> None:
        super().__init__(path, echo)
        self.view = view
        self.kept: dict[str, Throttle] = {}
        self.indent = ""

    def write(self, text: str) -> int:
        # kfp.local prints a step's output line by line, one write each, after a write of its
        # own indent: held back here, so a progress line left out takes its indent with it.
        if not text.strip(" "):  # print() also writes its empty `end=''`
            self.indent += text
            return len(text)
        indent, self.indent = self.indent, ""
        line = text.lstrip(" ")
        if line.startswith(PREFIX) and (record := parse(line)) is not None:
            self.view.show(record)
            keep = self.kept.setdefault(record.step, Throttle(self.view.every))
            if keep.due(self.view.clock(), record.last):
                super().write(indent + text)
            return len(text)
        super().write(indent + text)
        return len(text)

    def close(self) -> None:
        if self.indent and not self.closed:
            super().write(self.indent)
            self.indent = ""
        super().close()
