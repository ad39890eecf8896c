"""`submit --local` output: kfp's executor-input dumps leave the terminal but stay in steps.log,
and nothing else is hidden (a step's own output and errors always show)."""

from __future__ import annotations

import io
import json
import warnings

from cli.local_run import StepLogFilter, quiet_runner_output

EXECUTOR_INPUT = json.dumps({"inputs": {"parameterValues": {"seed": 42, "nested": {"a": [1, 2]}}},
                             "outputs": {"outputFile": "/x/executor_output.json"}}, indent=4)


def stream(step_output: str) -> list[str]:
    """What kfp.local prints for one step: its lines, indented by 4."""
    lines = ["[KFP Executor 2026 INFO]: Loading KFP component \"fine_tune\"",
             "[KFP Executor 2026 INFO]: Got executor_input:", *EXECUTOR_INPUT.splitlines(),
             *step_output.splitlines(), "[KFP Executor 2026 INFO]: Wrote executor output file"]
    return ["    " + line + "\n" for line in lines]


def run_filter(lines: list[str], tmp_path) -> tuple[str, str]:
    terminal = io.StringIO()
    f = StepLogFilter(terminal, tmp_path / "steps.log")
    for line in lines:  # kfp prints line by line; split one in two to check buffering too
        f.write(line[:7])
        f.write(line[7:])
    f.close()
    return terminal.getvalue(), (tmp_path / "steps.log").read_text()


def test_executor_input_goes_to_the_log_only(tmp_path):
    lines = stream("{'loss': '6.67', 'grad_norm': '0.48'}\n}\n")
    shown, log = run_filter(lines, tmp_path)
    assert '"parameterValues"' not in shown and '"seed": 42' not in shown
    assert "executor input (in the step log)" in shown
    assert "{'loss': '6.67'" in shown and "Wrote executor output file" in shown
    assert "    }\n" in shown  # a step's own lone brace after the block is not swallowed
    assert log == "".join(lines)  # the log is every byte, the dump included


def test_a_cut_off_dump_never_hides_what_follows(tmp_path):
    broken = ["    [KFP Executor 2026 INFO]: Got executor_input:\n", "    {\n",
              '        "inputs": {\n', "    [KFP Executor 2026 ERROR]: Traceback: boom\n",
              "    ValueError: boom\n"]
    shown, _ = run_filter(broken, tmp_path)
    assert "Traceback: boom" in shown and "ValueError: boom" in shown
    assert '"inputs"' not in shown


def test_verbose_and_kfp_local_only_warnings(tmp_path, capsys):
    with quiet_runner_output(tmp_path / "steps.log", verbose=True):
        print("    [KFP Executor 2026 INFO]: Got executor_input:\n    {\n    }")
    assert "Got executor_input" in capsys.readouterr().out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_runner_output(tmp_path / "steps.log"):
            warnings.warn("Task 'fine-tune': settings ['accelerator'] have no effect in the "
                          "current local runner and will be ignored.", stacklevel=1)
            warnings.warn('You may be attemping to run a task that uses custom or non-Python '
                          'base image "trainer:latest" in a Python environment.', RuntimeWarning,
                          stacklevel=1)
            warnings.warn("something else", stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]
