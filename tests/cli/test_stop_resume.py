"""The pieces of an interrupted local run and its resume, and the gate's words, one at a time
(the whole run under real signals: tests/integration/test_interrupt_resume.py)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from rich.console import Console

from cli import local_resume as resume
from cli.local_checks import gate_rows_warning
from cli.local_run import collect_outputs
from cli.run_output import results_table
from components.common.errors import InputError
from components.common.results import gate_sentence


def test_a_signal_before_the_pipeline_stops_at_once_during_it_only_notes() -> None:
    with resume.Interrupts() as stop:
        with pytest.raises(resume.Interrupted) as exc:
            os.kill(os.getpid(), signal.SIGHUP)
        assert exc.value.code == 129 and stop.signum == signal.SIGHUP
    with resume.Interrupts() as stop:
        stop.deferred = True
        os.kill(os.getpid(), signal.SIGINT)  # the running step stops itself; this one waits
        assert stop.signum == signal.SIGINT
        with pytest.raises(resume.Interrupted):
            stop.check()  # ... and the next step never starts
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


def test_resume_refuses_what_it_cannot_continue_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no run folder .*nope"):
        resume.load_spec(tmp_path, "nope")
    (tmp_path / "early").mkdir()
    with pytest.raises(InputError, match="no run.json"):
        resume.load_spec(tmp_path, "early")
    done = tmp_path / "done"
    resume.save_spec(done, {"max_steps": 3}, {})
    (done / "summary.json").write_text(json.dumps({"status": "SUCCESS"}))
    with pytest.raises(InputError, match="already finished"):
        resume.load_spec(tmp_path, "done")
    (done / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    assert resume.load_spec(tmp_path, "done") == ({"max_steps": 3}, {})


def _task(run: Path, name: str, finished: bool) -> None:
    (run / name / "out").mkdir(parents=True)
    if finished:
        (run / name / "executor_output.json").write_text(json.dumps(
            {"artifacts": {"out": {"artifacts": [{"metadata": {"run": run.name}}]}}}))


def test_a_resumed_run_takes_finished_steps_from_earlier_attempts_and_drops_unfinished(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "p-20260101", tmp_path / "p-20260102"
    _task(first, "prepare-data", finished=True)
    _task(first, "fine-tune", finished=False)  # killed mid-step
    resume.drop_unfinished_steps(tmp_path)
    assert not (first / "fine-tune").exists() and (first / "prepare-data").exists()
    _task(second, "fine-tune", finished=True)
    outs = collect_outputs(second)
    assert outs["prepare-data"]["out"]["metadata"] == {"run": "p-20260101"}
    assert outs["fine-tune"]["out"]["metadata"] == {"run": "p-20260102"}


@pytest.mark.parametrize(("split", "cap", "kept", "says"), [
    (30, 8, 201, "(8 will be scored, `gate_min_rows` is 30): nothing will be registered; "
                 "raise eval_max_rows to at least 30"),
    (13, 0, 84, "(13 will be scored, `gate_min_rows` is 30): nothing will be registered; "
                "raise test_fraction (now 0.15) to about 0.36"),
])
def test_preflight_warns_when_the_gate_cannot_decide(split: int, cap: int, kept: int,
                                                     says: str) -> None:
    params = {"eval_max_rows": cap, "gate_min_rows": 30, "test_fraction": 0.15}
    warning = gate_rows_warning(params, {"test_rows": split, "kept_rows": kept})
    assert warning is not None and says in warning and "\n" not in warning
    assert gate_rows_warning({**params, "eval_max_rows": 0}, {"test_rows": 40,
                                                              "kept_rows": kept}) is None


def test_too_few_rows_is_said_even_when_the_interval_favours_tuned() -> None:
    assert gate_sentence(False, False, 8, 30) == (
        "too few test rows to decide (8 scored, `gate_min_rows` is 30): not registered")
    interval = {"metric": "loss", "improvement_low": 0.2, "improvement_high": 0.9,
                "enough_rows": False, "tuned_better": False, "rows": 8, "min_rows": 30}
    console = Console(width=200, record=True)
    console.print(results_table({"test_rows": 30, "eval": {"interval": interval}}))
    text = console.export_text()
    assert "test split, 8 of 30 rows scored" in text
    assert "too few test rows to decide (8 scored, `gate_min_rows` is 30)" in text
    assert "beyond noise" not in text
