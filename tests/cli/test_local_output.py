"""`submit --local` output: a line per step as it starts and ends with the figure that matters,
everything kfp.local and the steps print in steps.log (and on the terminal with --verbose), the
tail of a failed step's output under its line. The whole-run check is in tests/e2e/test_local_run.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from pathlib import Path

from rich.console import Console

from cli.run_output import StepLog, StepTimer, results_table, runner_output_to, step_figure

# Artifact metadata as the steps write it (values from a run of the embedded default).
METADATA = {
    "fetch-base-model": {"model": {"files": 7, "size_mb": 5.0}},
    "prepare-data": {name: {"train_rows": 161, "validation_rows": 20, "test_rows": 20,
                            "rejected_rows": 27} for name in ("train", "test")},
    "fine-tune": {"model": {"first_logged_loss": 6.134, "last_logged_loss": 5.454,
                            "eval_loss": 6.118, "tokens_per_second": 2032.1, "global_step": 60}},
    "evaluate": {"generations": {"rows": 20, "tuned_better": True}},
    "gate": {"metrics": {"tuned_better": True}},
    "inference": {"predictions": {"rows": 20, "tokens_per_second": 4.5, "latency_p95_s": 83.79}},
    "register-model": {"registered_model": {"registry": "local",
                                            "display_name": "dolly-lora-gemma3-1b"}},
}
EVALUATION = {"base": {"loss": 6.4968}, "tuned": {"loss": 5.9934},
              "headline": {"metric": "loss", "improvement": 0.5034, "improvement_low": 0.3378,
                           "improvement_high": 0.7109}}


def task_dir(root: Path, task: str) -> Path:
    """A task's output folder as kfp.local writes it, with its executor_output.json."""
    d = root / "dolly-lora-2026-11-28-08-52-53" / task
    d.mkdir(parents=True)
    arts = {name: {"artifacts": [{"name": name, "metadata": md}]}
            for name, md in METADATA.get(task, {}).items()}
    (d / "executor_output.json").write_text(json.dumps({"artifacts": arts}))
    if task == "evaluate":
        (d / "generations").write_text(json.dumps(EVALUATION))
    return d


def test_each_step_has_its_figure(tmp_path: Path) -> None:
    figures = {t: step_figure(t, task_dir(tmp_path, t)) for t in METADATA}
    assert figures == {
        "fetch-base-model": "5.0 MB, 7 files",
        "prepare-data": "rows: train 161, validation 20, test 20, rejected 27",
        "fine-tune": "loss 6.134 -> 5.454, eval loss 6.118, 2,032 tokens/s, 60 steps",
        "evaluate": "test loss 6.497 -> 5.993, improvement +0.503 (95%: +0.338 to +0.711)",
        "gate": "tuned beats base beyond noise: register",
        "inference": "20 rows, 4.5 tokens/s, latency p95 83.8 s",
        "register-model": "dolly-lora-gemma3-1b: local record",
    }
    assert step_figure("fine-tune", tmp_path / "missing") == ""  # no output: no figure, no error


def kfp_record(message: str) -> logging.LogRecord:
    """A record as kfp.local logs it: task names in colour codes."""
    return logging.LogRecord("root", logging.INFO, __file__, 0, message, None, None)


def test_start_and_end_lines_and_a_failed_steps_tail(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    log = StepLog(tmp_path / "steps.log")
    task_dir(tmp_path / "pipeline", "fine-tune")
    ticks = iter([0.0, 12.5, 20.0, 21.0])
    timer = StepTimer(console, tmp_path / "pipeline", log, clock=lambda: next(ticks))
    log.write("before the step\n")
    timer.filter(kfp_record("Executing task \x1b[96m'fine-tune'\x1b[0m"))
    log.write("{'loss': '6.134'}\n")
    timer.filter(kfp_record("Task \x1b[96m'fine-tune'\x1b[0m finished with status "
                            "\x1b[92mSUCCESS\x1b[0m"))
    timer.filter(kfp_record("Executing task 'evaluate'"))
    log.write("Traceback (most recent call last):\n\nValueError: boom\n")
    timer.filter(kfp_record("Task 'evaluate' finished with status FAILURE"))
    log.close()
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("▶ fine-tune")
    assert lines[1].endswith("■ fine-tune           12.5 s  loss 6.134 -> 5.454, eval loss 6.118, "
                             "2,032 tokens/s, 60 steps")
    assert lines[2].endswith("▶ evaluate")
    assert lines[3].endswith("■ evaluate         FAILURE after 1.0 s")
    assert lines[4:] == ["    Traceback (most recent call last):", "    ValueError: boom"]
    assert timer.steps == {"fine-tune": {"status": "SUCCESS", "seconds": 12.5},
                           "evaluate": {"status": "FAILURE", "seconds": 1.0}}


def test_everything_the_runner_prints_goes_to_the_log(tmp_path: Path, capsys) -> None:
    from kfp.local import logging_utils  # how kfp.local logs: a handler on the sys.stdout of the moment

    log = StepLog(tmp_path / "steps.log")
    with runner_output_to(log):
        with logging_utils.local_logger_context():
            logging.info("Executing task \x1b[96m'prepare-data'\x1b[0m")
        print("    [KFP Executor 2026 INFO]: Got executor_input:")  # a step's streamed line
        print("a warning from a library", file=sys.stderr)
    log.close()
    shown = capsys.readouterr()
    assert shown.out == "" and shown.err == ""
    text = (tmp_path / "steps.log").read_text()
    assert "Executing task 'prepare-data'" in text and "\x1b[" not in text
    assert "Got executor_input" in text and "a warning from a library" in text


def test_verbose_echoes_the_log_as_it_comes(tmp_path: Path) -> None:
    terminal = io.StringIO()
    log = StepLog(tmp_path / "steps.log", echo=terminal)
    with runner_output_to(log):
        print("\x1b[92mSUCCESS\x1b[0m step output")
    log.close()
    assert terminal.getvalue() == "\x1b[92mSUCCESS\x1b[0m step output\n"
    assert (tmp_path / "steps.log").read_text() == "SUCCESS step output\n"


def test_kfp_local_only_warnings_are_silenced(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with runner_output_to(StepLog(tmp_path / "steps.log")):
            warnings.warn("Task 'fine-tune': settings ['accelerator'] have no effect in the "
                          "current local runner and will be ignored.", stacklevel=1)
            warnings.warn('You may be attemping to run a task that uses custom or non-Python '
                          'base image "trainer:latest" in a Python environment.', RuntimeWarning,
                          stacklevel=1)
            warnings.warn("something else", stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


def test_results_table(tmp_path: Path) -> None:
    out = io.StringIO()
    summary = {"test_rows": 20, "eval": {
        "base": {"loss": 6.4968, "perplexity": 663.02, "rougeL": 0.0652},
        "tuned": {"loss": 5.9934, "perplexity": 400.78, "rougeL": 0.0154},
        "interval": {"metric": "loss", "improvement": 0.5034, "improvement_low": 0.3378,
                     "improvement_high": 0.7109, "tuned_better": True}}}
    Console(file=out, width=100, color_system=None).print(results_table(summary))
    text = out.getvalue()
    assert "test split, 20 rows" in text
    rows = {ln.split()[0]: ln.split()[1:] for ln in text.splitlines()[:8] if ln.strip()}
    assert rows["loss"] == ["6.497", "5.993", "-0.503"]
    assert rows["ROUGE-L"] == ["0.065", "0.015", "-0.050"]
    assert ("loss improvement (tuned over base), 95% interval +0.338 to +0.711: tuned passes "
            "the gate; but ROUGE-L fell 0.065 -> 0.015: the other way") in " ".join(text.split())
    assert len(text.splitlines()) < 12


def test_a_step_out_of_memory_shows_that_line_alone(tmp_path: Path) -> None:
    """Not kfp's metadata dump: the one line the entry point wrote, which the summary keeps."""
    out = io.StringIO()
    log = StepLog(tmp_path / "steps.log")
    timer = StepTimer(Console(file=out, width=200, color_system=None), tmp_path / "pipeline", log,
                      clock=iter([0.0, 178.0]).__next__)
    timer.filter(kfp_record("Executing task 'evaluate'"))
    oom = ("evaluate: out of memory (killed by the kernel's OOM killer, resident memory, peak "
           "22.8 GiB); lower generation_batch_size, eval_max_rows or max_seq_len")
    log.write('    "outputs": {"artifacts": {"generations": {"artifacts": [{"name": "g"}]}}}\n'
              f"{oom}\n" + '    "parameterValues": {"max_new_tokens": 256}\n' * 5)
    timer.filter(kfp_record("Task 'evaluate' finished with status FAILURE"))
    lines = out.getvalue().splitlines()
    assert lines[1].endswith("■ evaluate         FAILURE after 178.0 s")
    assert lines[2:] == [f"    {oom}"]
    assert timer.failure == oom


def test_the_peak_memory_follows_each_steps_figure(tmp_path: Path) -> None:
    METADATA["inference"]["predictions"].update(peak_rss_mb=2048.0)
    METADATA["gate"]["metrics"].update(peak_rss_mb=45.0)
    try:
        assert step_figure("inference", task_dir(tmp_path, "inference")).endswith(
            "latency p95 83.8 s, peak 2.0 GiB")
        assert step_figure("gate", task_dir(tmp_path, "gate")).endswith(", peak 45 MiB")
    finally:
        del METADATA["inference"]["predictions"]["peak_rss_mb"]
        del METADATA["gate"]["metrics"]["peak_rss_mb"]
