"""Progress lines of a long step (fine-tune's steps, evaluate's and inference's rows).

Plain text, one line, a fixed prefix: a person reads it in any log (Vertex, Cloud Batch, CI)
and `submit --local` parses it back (`parse`) into a live progress bar on a terminal.

    progress fine-tune step 120/500 loss 1.830 4,210 tok/s eta 6m12s
    progress evaluate rows 12/40 eta 1m03s (tuned model)
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

PREFIX = "progress "
# Seconds between two lines in a log. Why 30: a 20-minute fine-tune then writes ~40 lines, which
# a person scrolls through, and a stalled step shows within half a minute; Cloud Logging reads
# them at no noticeable cost.
EVERY_S = 30.0
# `submit --local` on a terminal asks its steps for a line every second (it keeps one line per
# step on the screen and thins steps.log back to EVERY_S).
ENV_EVERY = "STEP_PROGRESS_EVERY_S"

_LINE = re.compile(
    r"^progress (?P<step>\S+) (?P<unit>step|rows) (?P<done>\d+)/(?P<total>\d+)"
    r"(?: loss (?P<loss>\S+))?(?: (?P<tps>[\d,.]+) tok/s)?(?: eta (?P<eta>\S+))?"
    r"(?: \((?P<note>[^)]*)\))?$"
)


def duration(seconds: float) -> str:
    """'45s', '6m12s', '1h02m': short enough for a progress line."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class Record:
    """One progress line, as a step writes it and the CLI reads it back."""

    step: str
    unit: str  # "step" (optimizer steps) or "rows"
    done: int
    total: int
    loss: float | None = None
    tokens_per_second: float | None = None
    eta: str = ""  # duration() text
    note: str = ""

    def line(self) -> str:
        text = f"{PREFIX}{self.step} {self.unit} {self.done}/{self.total}"
        if self.loss is not None:
            text += f" loss {self.loss:.3f}"
        if self.tokens_per_second is not None:
            text += f" {self.tokens_per_second:,.0f} tok/s"
        if self.eta:
            text += f" eta {self.eta}"
        return text + (f" ({self.note})" if self.note else "")

    @property
    def last(self) -> bool:
        return self.done >= self.total


def parse(line: str) -> Record | None:
    """The record a progress line carries; None for any other line."""
    if not line.startswith(PREFIX) or not (m := _LINE.match(line.rstrip("\r\n"))):
        return None
    try:
        loss = float(m["loss"]) if m["loss"] else None
    except ValueError:
        return None
    tps = float(m["tps"].replace(",", "")) if m["tps"] else None
    return Record(m["step"], m["unit"], int(m["done"]), int(m["total"]), loss, tps,
                  m["eta"] or "", m["note"] or "")


def every_seconds() -> float:
    """EVERY_S, or what the process that reads the lines asked for (ENV_EVERY)."""
    try:
        value = float(os.environ.get(ENV_EVERY, EVERY_S))
    except ValueError:
        return EVERY_S
    return value if math.isfinite(value) and value >= 0 else EVERY_S


class Throttle:
    """Lets a line through at the first call, then at most every `every` seconds; the last
    line (`last=True`) always."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.at: float | None = None

    def due(self, now: float, last: bool = False) -> bool:
        if last or self.at is None or now - self.at >= self.every:
            self.at = now
            return True
        return False


class Progress:
    """Counts a step's work and prints a progress line at most every `every` seconds, and the
    last one (done == total, or `finish()`) always. Costs a clock read per update."""

    def __init__(self, step: str, unit: str, total: int, *, start: int = 0,
                 every: float | None = None, clock: Callable[[], float] = time.monotonic,
                 out: TextIO | None = None) -> None:
        self.record = Record(step, unit, start, max(int(total), 0))
        self.start, self.clock, self.out = start, clock, out
        self.t0 = clock()
        self.throttle = Throttle(every_seconds() if every is None else every)
        self.pending = False  # an update not printed yet

    def update(self, done: int, *, loss: float | None = None, tokens: int | None = None,
               note: str | None = None) -> None:
        """`done` so far (of total); `tokens` counted since this Progress began."""
        now = self.clock()
        r = self.record
        r.done = min(int(done), r.total) if r.total else int(done)
        elapsed = now - self.t0
        if loss is not None and math.isfinite(loss):
            r.loss = float(loss)
        if tokens is not None and elapsed > 0:
            r.tokens_per_second = tokens / elapsed
        if note is not None:
            r.note = note
        if r.done > self.start and elapsed > 0:
            r.eta = duration((r.total - r.done) * elapsed / (r.done - self.start))
        self.pending = True
        if self.throttle.due(now, last=r.last):
            self._print()

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.update(self.record.done + n, note=note)

    def finish(self) -> None:
        """Print the latest state if it has not been printed (work that stops before total)."""
        if self.pending:
            self._print()

    def _print(self) -> None:
        self.pending = False
        print(self.record.line(), file=self.out or sys.stdout, flush=True)
