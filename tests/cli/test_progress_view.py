"""`submit --local`'s progress display: a rich progress line per running step on a terminal,
thinned plain lines elsewhere and in steps.log."""

from __future__ import annotations

import io
import logging
import os

from rich.console import Console

from cli.progress import ProgressStepLog, ProgressView
from components.common.progress import ENV_EVERY, Record


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def finished(step: str) -> logging.LogRecord:
    """kfp.local's end record, its task name in colour as kfp writes it."""
    return logging.LogRecord("kfp", logging.INFO, "", 0,
                             f"Task '\x1b[96m{step}\x1b[0m' finished with status "
                             "\x1b[92mSUCCESS\x1b[0m", None, None)


def test_on_a_terminal_a_record_becomes_a_live_progress_line():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    view = ProgressView(console)
    assert view.live
    view.show(Record("fine-tune", "step", 120, 500, 1.83, 4210, "6m12s"))
    view.bars.refresh()
    shown = out.getvalue()
    assert "fine-tune step" in shown and "120/500" in shown
    assert "loss 1.830" in shown and "4,210 tok/s" in shown and "eta 6m12s" in shown
    assert "━" in shown  # the bar
    view.filter(finished("fine-tune"))  # kfp.local's end record takes the line away
    assert not view.tasks and not view.bars.live.is_started


def test_off_a_terminal_plain_lines_at_most_every_n_seconds_and_the_last():
    out, clock = io.StringIO(), Clock()
    view = ProgressView(Console(file=out, force_terminal=False, width=200), every=30,
                        clock=clock)
    assert not view.live
    for done in range(1, 11):
        clock.now += 10
        view.show(Record("evaluate", "rows", done, 10, eta="1m"))
    assert out.getvalue().splitlines() == [
        "progress evaluate rows 1/10 eta 1m", "progress evaluate rows 4/10 eta 1m",
        "progress evaluate rows 7/10 eta 1m", "progress evaluate rows 10/10 eta 1m"]


def test_steps_log_keeps_progress_readable_and_every_other_line(tmp_path):
    clock = Clock()
    view = ProgressView(Console(file=io.StringIO(), force_terminal=True), every=30, clock=clock)
    log = ProgressStepLog(tmp_path / "steps.log", view)
    def kfp_print(line: str) -> None:  # kfp.local's indented print: the indent, then the line
        log.write("    ")
        log.write("")  # print()'s end=''
        log.write(line + "\n")
        log.write("")

    kfp_print("Executing fine-tune")
    for step in range(1, 61):  # a line a second, as the steps print on a terminal
        clock.now += 1
        kfp_print(Record("fine-tune", "step", step, 60, 2.0, 100, "1s").line())
    kfp_print("{'train_runtime': 60.0}")
    log.close()
    assert list(view.tasks) == ["fine-tune"]  # its live line stays until kfp's end record
    view.close()
    lines = (tmp_path / "steps.log").read_text().splitlines()
    assert lines[0] == "    Executing fine-tune" and lines[-1] == "    {'train_runtime': 60.0}"
    assert [ln[:30] for ln in lines[1:-1]] == [  # one indent each, no more
        f"    progress fine-tune step {n}" for n in ("1/", "31", "60")]


def test_on_a_terminal_the_steps_are_asked_for_a_line_a_second(monkeypatch):
    monkeypatch.delenv(ENV_EVERY, raising=False)
    view = ProgressView(Console(file=io.StringIO(), force_terminal=True))
    with view.steps_env():
        assert os.environ[ENV_EVERY] == "1.0"
    assert ENV_EVERY not in os.environ
    with ProgressView(Console(file=io.StringIO(), force_terminal=False)).steps_env():
        assert ENV_EVERY not in os.environ
