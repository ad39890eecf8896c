"""Step progress lines: throttled to one every N seconds on an injected clock, the last always,
and read back by the CLI's parser."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from components.common.progress import ENV_EVERY, EVERY_S, Progress, Record, duration, parse
from components.fine_tune.callbacks import ProgressCallback


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_every_n_seconds_and_the_last_always():
    clock, out = Clock(), io.StringIO()
    p = Progress("evaluate", "rows", 100, every=30, clock=clock, out=out)
    for done in range(1, 101):
        clock.now += 1.0  # one row a second: 100 s in all
        p.update(done)
    lines = out.getvalue().splitlines()
    # the first at 1 s, then at 31, 61, 91 s, and the last (100/100) although 9 s after 91
    assert [parse(ln).done for ln in lines] == [1, 31, 61, 91, 100]
    assert lines[0] == "progress evaluate rows 1/100 eta 1m39s"
    assert lines[-1] == "progress evaluate rows 100/100 eta 0s"


def test_finish_prints_a_stop_before_total_and_nothing_twice():
    clock, out = Clock(), io.StringIO()
    p = Progress("fine-tune", "step", 50, start=10, every=30, clock=clock, out=out)
    clock.now += 10
    p.update(20, loss=2.5, tokens=4000)  # resumed at 10: 10 steps in 10 s, 30 left
    clock.now += 10
    p.update(25, loss=2.0, tokens=6000)  # within 30 s: held back
    assert out.getvalue().splitlines() == [
        "progress fine-tune step 20/50 loss 2.500 400 tok/s eta 30s"]
    p.finish()
    p.finish()
    assert out.getvalue().splitlines()[1:] == [
        "progress fine-tune step 25/50 loss 2.000 300 tok/s eta 33s"]  # 15 steps in 20 s


@pytest.mark.parametrize("record", [
    Record("fine-tune", "step", 120, 500, 1.83, 4210.4, "6m12s"),
    Record("evaluate", "rows", 12, 40, eta="1m03s", note="tuned model"),
    Record("inference", "rows", 0, 8),
])
def test_a_line_reads_back_as_its_record(record):
    line = record.line()
    assert line.startswith("progress ") and "{" not in line  # plain text, not JSON
    back = parse(line + "\n")
    assert back == Record(record.step, record.unit, record.done, record.total,
                          record.loss and round(record.loss, 3),
                          record.tokens_per_second and round(record.tokens_per_second),
                          record.eta, record.note)


def test_other_lines_are_not_progress():
    assert parse("progress was made") is None
    assert parse("{'loss': 2.1, 'step': 3}") is None


def test_durations_and_the_interval_setting(monkeypatch):
    assert [duration(s) for s in (0, 45.4, 372, 3720)] == ["0s", "45s", "6m12s", "1h02m"]
    monkeypatch.setenv(ENV_EVERY, "1")
    assert Progress("x", "rows", 1).throttle.every == 1.0
    monkeypatch.setenv(ENV_EVERY, "soon")
    assert Progress("x", "rows", 1).throttle.every == EVERY_S


def test_the_trainer_callback_reads_step_loss_and_tokens_the_trainer_counted():
    clock, out = Clock(), io.StringIO()
    cb = ProgressCallback(every=30, clock=clock, out=out)
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=40,
                            num_input_tokens_seen=500)
    cb.on_train_begin(None, state, None)
    for step in range(1, 41):
        clock.now += 2.0  # 2 s a step, 1,000 tokens a step
        state.global_step, state.num_input_tokens_seen = step, 500 + 1000 * step
        cb.on_step_end(None, state, None)
        if step % 5 == 0:
            cb.on_log(None, state, None, logs={"loss": 3.0 - step / 20})
    cb.on_train_end(None, state, None)
    lines = out.getvalue().splitlines()
    assert lines == [
        "progress fine-tune step 1/40 500 tok/s eta 1m18s",  # no loss logged yet
        "progress fine-tune step 16/40 loss 2.250 500 tok/s eta 48s",
        "progress fine-tune step 31/40 loss 1.500 500 tok/s eta 18s",
        # the last step's line waits for its own logged loss
        "progress fine-tune step 40/40 loss 1.000 500 tok/s eta 0s",
    ]


def test_the_callback_prints_nothing_off_rank_zero():
    out = io.StringIO()
    cb = ProgressCallback(every=0, out=out)
    state = SimpleNamespace(is_world_process_zero=False, global_step=1, max_steps=2,
                            num_input_tokens_seen=0)
    cb.on_train_begin(None, state, None)
    cb.on_step_end(None, state, None)
    cb.on_train_end(None, state, None)
    assert out.getvalue() == ""
