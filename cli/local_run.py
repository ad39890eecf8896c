"""`submit --local`: the same pipeline, run by KFP's own local runner (no executor of our own).

Before anything runs, every parameter and the data itself are checked (the same code the prepare
step runs), so bad input leaves no partial outputs. While it runs, a filter on the root logger
reads kfp.local's own task messages to time each step. Afterwards `summary.json` gathers what a
person or a script wants to know: row counts, base vs tuned metrics, per-step seconds and the
path of every artifact.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from cli.report_outputs import add_evaluation, publish_reports
from components.common.errors import InputError

ANSI = re.compile(r"\x1b\[[0-9;]*m")
console = Console(stderr=True)


@dataclass
class StepTimer(logging.Filter):
    """Observes kfp.local's "Executing task 'x'" / "Task 'x' finished with status S" records."""

    started: dict[str, float] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        logging.Filter.__init__(self)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = ANSI.sub("", str(record.getMessage()))
        if m := re.match(r"Executing task '([^']+)'", msg):
            self.started[m.group(1)] = time.perf_counter()
            self.steps[m.group(1)] = {"status": "RUNNING", "seconds": None}
            console.print(f"[bold cyan]▶ {m.group(1)}[/] started")
        elif m := re.match(r"Task '([^']+)' finished with status (\w+)", msg):
            self._finish(m.group(1), m.group(2))
        return True

    def _finish(self, name: str, status: str) -> None:
        seconds = round(time.perf_counter() - self.started.get(name, time.perf_counter()), 2)
        self.steps[name] = {"status": status, "seconds": seconds}
        style = "green" if status == "SUCCESS" else "red"
        console.print(f"[bold {style}]■ {name}[/] {status} in {seconds:.1f} s")

    def close_running(self) -> None:
        for name, info in self.steps.items():
            if info["status"] == "RUNNING":
                self._finish(name, "FAILURE")


def preflight(params: dict[str, Any]) -> dict[str, Any]:
    """Run every check the steps would, without writing anything. Returns the data stats."""
    from components.common.config import DataConfig, TrainConfig, build
    from components.common.modeling import check_target_modules, load_tokenizer
    from components.prepare_data.prepare import prepare

    data_cfg = build(DataConfig, params)
    train_cfg = build(TrainConfig, params)
    check_target_modules(train_cfg.base_model, train_cfg.target_module_list)
    if train_cfg.checkpoint_uri:  # no bucket / no permission: fail here, before any step runs
        from components.fine_tune.checkpointing import CheckpointStore, task_prefix

        CheckpointStore(task_prefix(train_cfg.checkpoint_uri, params["run_name"])).check_access()
    return prepare(data_cfg, load_tokenizer(data_cfg.base_model)).stats


def _read_executor_output(task_dir: Path) -> dict[str, Any]:
    path = task_dir / "executor_output.json"
    return json.loads(path.read_text()) if path.exists() else {}


def collect_outputs(run_dir: Path) -> dict[str, dict[str, Any]]:
    """{task: {output: {"path": ..., "metadata": {...}}}} from the local run's folder."""
    tasks: dict[str, dict[str, Any]] = {}
    for task_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        executor = _read_executor_output(task_dir)
        outs: dict[str, Any] = {}
        for name, arts in executor.get("artifacts", {}).items():
            art = arts["artifacts"][0]
            outs[name] = {
                "path": str(task_dir / name),
                "metadata": art.get("metadata", {}),
            }
        for out in task_dir.iterdir():
            if out.name != "executor_output.json" and out.name not in outs:
                outs[out.name] = {"path": str(out), "metadata": {}}
        tasks[task_dir.name] = outs
    return tasks


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def build_summary(
    run_id: str, run_dir: Path | None, steps: dict[str, Any], params: dict[str, Any],
    wall_seconds: float, status: str,
) -> dict[str, Any]:
    outputs = collect_outputs(run_dir) if run_dir else {}
    meta = {task: {k: v["metadata"] for k, v in outs.items()} for task, outs in outputs.items()}
    prep = meta.get("prepare-data", {})
    metrics = meta.get("gate", {}).get("metrics", {})
    tuned = meta.get("fine-tune", {}).get("model", {})

    def count(name: str, key: str = "rows") -> int | None:
        value = prep.get(name, {}).get(key)
        return int(value) if value is not None else None

    summary = {
        "run_id": run_id,
        "status": status,
        "wall_seconds": round(wall_seconds, 2),
        "steps": steps,
        "train_rows": count("train"),
        "val_rows": count("validation"),
        "test_rows": count("test"),
        "rejected_rows": count("rejected"),
        "source_rows": count("train", "source_rows"),
        "split_hash": prep.get("train", {}).get("split_hash"),
        "eval": {
            name: {
                k: metrics.get(f"{name}_{k}") for k in ("loss", "perplexity", "rougeL")
            }
            for name in ("base", "tuned")
        }
        if metrics
        else {},
        "training": {k: tuned.get(k) for k in (
            "train_loss", "eval_loss", "global_step", "train_seconds", "tokens_per_second",
            "base_weights_digest_before", "base_weights_digest_after", "wandb_url",
            "checkpoint_prefix", "checkpoints_saved", "checkpoint_seconds",
            "checkpoint_seconds_each", "checkpoint_share",
        )} if tuned else {},
        # null when fine-tune started fresh (metadata drops None; integers come back as floats)
        "resumed_from_step": _int(tuned.get("resumed_from_step")),
        "final_step": _int(tuned.get("global_step")),
        # The export step's merged model (what `submit serve RUN_DIR` serves) and its checks.
        "merged_model": outputs.get("export", {}).get("merged", {}).get("path"),
        "export": meta.get("export", {}).get("merged", {}),
        "artifacts": {
            f"{task}.{name}": info["path"] for task, outs in outputs.items()
            for name, info in outs.items()
        },
        "parameters": params,
        "pipeline_root": str(run_dir.parent) if run_dir else None,
    }
    add_evaluation(summary)
    return summary


class StepLogFilter(io.TextIOBase):
    """Stands in for stdout while kfp.local streams each step's output.

    Why: kfp's executor prints every step's whole executor input (hundreds of lines of JSON per
    step) before the step's own output; that buries the training log and any error. The block
    is dropped from the terminal; every line, the block included, still goes to `log_path`.
    """

    START = "Got executor_input:"
    END = re.compile(r"^ {0,4}\}\s*$")  # the JSON's closing brace (kfp indents step output by 4)
    NEXT = re.compile(r"^\s*\[KFP Executor ")

    def __init__(self, terminal: Any, log_path: Path) -> None:
        self.terminal = terminal
        self.log = log_path.open("a", encoding="utf-8")
        self.pending = ""
        self.hiding = False
        self.hidden_lines = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._line(line + "\n")
        return len(text)

    def _line(self, line: str) -> None:
        if self.hiding and self.NEXT.match(line):
            self.hiding = False  # never hide past the block, whatever it looked like
        if self.hiding:
            self.hidden_lines += 1
            if self.END.match(line):
                self.hiding = False
            return
        if self.START in line:
            self.hiding = True
            line = line.replace(self.START, "executor input (in the step log)")
        self.terminal.write(line)

    def flush(self) -> None:
        if self.pending and not self.hiding:
            self.terminal.write(self.pending)
            self.pending = ""
        self.terminal.flush()
        self.log.flush()

    def close(self) -> None:
        if not self.closed:
            super().close()  # flushes
            self.log.close()


@contextlib.contextmanager
def quiet_runner_output(log_path: Path, verbose: bool = False) -> Iterator[None]:
    """kfp.local without its noise: executor-input dumps go to `log_path` only, and its warnings
    that Vertex-only settings (machine type, accelerator, CUDA image) do nothing locally, which
    is expected here, are silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Task '.*': settings \[.*no effect")
        warnings.filterwarnings("ignore", message=r"You may be attempt?ing to run a task")
        if verbose:
            yield
            return
        out = StepLogFilter(sys.stdout, log_path)
        try:
            with contextlib.redirect_stdout(out):
                yield
        finally:
            out.close()


def run_local(
    params: dict[str, Any], output_dir: Path, run_id: str, verbose: bool = False
) -> Path:
    """Run the pipeline locally; returns the path of summary.json (written even on failure)."""
    console.print(f"[bold]Checking parameters and data[/] ({params['dataset']})")
    stats = preflight(params)
    console.print(
        f"  {stats['kept_rows']} rows kept of {stats['source_rows']} "
        f"({stats['rejected_rows']} rejected), split {stats['split_hash']}"
    )

    run_root = (output_dir / run_id).resolve()
    if run_root.exists() and any(run_root.iterdir()) and not params.get("checkpoint_uri"):
        raise InputError(
            f"{run_root} already exists; pick another --run-id, remove it, or give "
            "--checkpoint-uri to resume that run from its checkpoints"
        )
    run_root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_DIR", str(run_root))

    from kfp import local

    from pipelines.lora_pipeline import lora_pipeline

    pipeline_root = run_root / "pipeline"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )
    timer = StepTimer()
    root = logging.getLogger()
    root.addFilter(timer)
    start = time.perf_counter()
    status = "SUCCESS"
    error: str | None = None
    try:
        with quiet_runner_output(run_root / "steps.log", verbose):
            lora_pipeline(**params)
    except RuntimeError as exc:
        status, error = "FAILURE", ANSI.sub("", str(exc))
    finally:
        root.removeFilter(timer)
        timer.close_running()
    wall = time.perf_counter() - start
    run_dirs = sorted(pipeline_root.glob("*/")) if pipeline_root.exists() else []
    summary = build_summary(
        run_id, run_dirs[-1] if run_dirs else None, timer.steps, params, wall, status
    )
    if error:
        summary["error"] = error
    summary["report"] = publish_reports(summary, run_root)
    path = run_root / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    if status != "SUCCESS":
        console.print(f"[bold red]Pipeline failed:[/] {error}")
    else:
        e = summary["eval"]
        console.print(
            f"[bold green]Done[/] in {wall:.0f} s. test loss base {e['base']['loss']:.3f} -> "
            f"tuned {e['tuned']['loss']:.3f}; ROUGE-L {e['base']['rougeL']:.3f} -> "
            f"{e['tuned']['rougeL']:.3f}"
        )
        if summary.get("merged_model"):
            console.print(f"Serve it: [bold]uv run submit serve {run_root}[/]")
    return path
