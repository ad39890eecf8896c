"""`submit --local`: the same pipeline, run by KFP's own local runner (no executor of our own).

Before anything runs, every parameter and the data itself are checked (the same code the prepare
step runs), so bad input leaves no partial outputs. While it runs, kfp's output goes to
`steps.log` and the terminal shows a line per step (`cli.run_output`). Afterwards `summary.json`
gathers what a person or a script wants to know: row counts, base vs tuned metrics, per-step
seconds and the path of every artifact.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import typer

from cli import local_resume as resume_
from cli.local_checks import check_disk, preflight
from cli.local_checks import checked as _checked
from cli.progress import ProgressStepLog, ProgressView
from cli.report_outputs import add_evaluation, publish_reports
from cli.run_folder import RunFolder
from cli.run_output import (
    ANSI,
    results_table,
    runner_output_to,
    step_peak,
    terminal_console,
)
from cli.sweep_output import add_sweep
from cli.tracking_outputs import tracking_lines, tracking_summary


def _read_executor_output(task_dir: Path) -> dict[str, Any]:
    path = task_dir / "executor_output.json"
    return json.loads(path.read_text()) if path.exists() else {}


def collect_outputs(run_dir: Path) -> dict[str, dict[str, Any]]:
    """{task: {output: {"path": ..., "metadata": {...}}}} from the local run's folder, and the
    steps a resumed run took from earlier pipeline runs of the same run folder (kfp.local's
    cache: finished there, skipped here)."""
    earlier = sorted(p for p in run_dir.parent.iterdir()
                     if p.is_dir() and p.name < run_dir.name and not p.name.startswith("."))
    tasks: dict[str, dict[str, Any]] = {}
    for folder in earlier:
        for name, outs in _task_outputs(folder).items():
            if (folder / name / "executor_output.json").exists():
                tasks[name] = outs
    return {**tasks, **_task_outputs(run_dir)}


def _task_outputs(run_dir: Path) -> dict[str, dict[str, Any]]:
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


def written_artifacts(outputs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """`task.output` -> local path, only for outputs that exist on disk: a Metrics artifact
    (gate.metrics) lives in executor_output.json and never gets a file of its own."""
    return {
        f"{task}.{name}": info["path"] for task, outs in outputs.items()
        for name, info in outs.items() if Path(info["path"]).exists()
    }


def build_summary(
    run_id: str, run_dir: Path | None, steps: dict[str, Any], params: dict[str, Any],
    wall_seconds: float, status: str, run_root: Path | None = None,
) -> dict[str, Any]:
    from components.common.results import AdapterModel, Export, GateVerdict, PreparedData

    outputs = collect_outputs(run_dir) if run_dir else {}
    meta = {task: {k: v["metadata"] for k, v in outs.items()} for task, outs in outputs.items()}
    prep = {name: PreparedData.read(m) for name, m in meta.get("prepare-data", {}).items()}
    gate = meta.get("gate", {}).get("metrics")
    scores = GateVerdict.read(gate).scalars if gate else {}
    # a sweep's winner, else the one fine-tune
    tuned = meta.get("select-trial", {}).get("winner") or meta.get("fine-tune", {}).get("model")
    trained = AdapterModel.read(tuned)
    merged = meta.get("export", {}).get("merged")

    for task, outs in meta.items():  # each step's peak memory beside its status and seconds
        if task in steps and (peak := step_peak(outs)):
            steps[task] = {**steps[task], **peak}
    train = prep.get("train", PreparedData())
    summary = {
        "run_id": run_id,
        "status": status,
        "wall_seconds": round(wall_seconds, 2),
        "steps": steps,
        "train_rows": train.rows,
        "val_rows": prep.get("validation", PreparedData()).rows,
        "test_rows": prep.get("test", PreparedData()).rows,
        "rejected_rows": prep.get("rejected", PreparedData()).rows,
        "source_rows": train.source_rows,
        "split_hash": train.split_hash or None,
        "data_format": train.data_format or None,
        # the hub commit read (a rerun with dataset_revision=<it> reads the same rows)
        "dataset_revision": train.dataset_revision or None,
        "test_overlap_dropped": train.test_overlap_dropped,
        "eval": {
            name: {k: scores.get(f"{name}_{k}") for k in ("loss", "perplexity", "rougeL")}
            for name in ("base", "tuned")
        } if gate else {},
        "training": trained.summary() if tuned else {},
        # null when fine-tune started fresh
        "resumed_from_step": trained.resumed_from_step,
        "final_step": trained.global_step,
        # The export step's merged model (what `submit serve RUN_DIR` serves) and its checks.
        "merged_model": outputs.get("export", {}).get("merged", {}).get("path"),
        "export": Export.read(merged).metadata() if merged else {},
        "artifacts": written_artifacts(outputs),
        "parameters": params,
        "pipeline_root": str(run_dir.parent) if run_dir else None,
    }
    add_evaluation(summary)
    add_sweep(summary)
    summary["tracking"] = tracking_summary(meta, params, run_root) if run_root else {}
    return summary


def run_local(
    params: dict[str, Any], output_dir: Path, run_id: str, verbose: bool = False,
    dry_run: bool = False, defaults: dict[str, Any] | None = None, resume: bool = False,
    sweep: tuple[str, ...] = (), sweep_parallelism: int = 0,
) -> Path | None:
    """Run the pipeline locally; returns the path of summary.json (written even on failure
    or interruption).

    The run folder is claimed first, then every check runs; bad input leaves nothing behind.
    Fine-tune checkpoints go into the run folder unless `checkpoint_uri` names another place;
    `resume` continues the run in that folder. With `dry_run`, only the checks run and nothing
    is written (returns None)."""
    console = terminal_console()
    run_root = (output_dir / run_id).resolve()
    if not params.get("checkpoint_uri"):
        params = {**params, "checkpoint_uri": resume_.checkpoint_uri(run_root)}
    if dry_run:
        RunFolder.check_location(run_root)
        check_disk(params, run_root)
        _checked(params, preflight(params), defaults or {})
        console.print(f"dry run: every check passed; nothing written (the run would go to "
                      f"{run_root})")
        return None
    with resume_.Interrupts() as interrupts:
        folder = RunFolder(run_root, resume=resume or params["checkpoint_uri"].startswith("gs://"))
        folder.claim()
        try:
            check_disk(params, run_root)
            stats = preflight(params)
        except BaseException:
            folder.abandon()
            raise
        _checked(params, stats, defaults or {})
        if note := _go_offline_if_unreachable():
            console.print(f"[yellow]{note}[/]")
        try:
            return _run_claimed(params, run_root, run_id, verbose, defaults or {}, interrupts,
                                output_dir, sweep, sweep_parallelism)
        finally:
            folder.release()


def _go_offline_if_unreachable() -> str | None:
    from components.common.tracking import go_offline_if_unreachable

    return go_offline_if_unreachable()


def _run_claimed(
    params: dict[str, Any], run_root: Path, run_id: str, verbose: bool, defaults: dict[str, Any],
    interrupts: resume_.Interrupts, output_dir: Path, sweep: tuple[str, ...] = (),
    sweep_parallelism: int = 0,
) -> Path:
    console = terminal_console()
    resume_.save_spec(run_root, params, defaults)
    os.environ.setdefault("WANDB_DIR", str(run_root))
    from components.common.tracking import ENV_TRACKING_DIR

    os.environ[ENV_TRACKING_DIR] = str(run_root)  # TensorBoard, MLflow: next to summary.json

    from kfp import local

    from pipelines.lora_pipeline import build_pipeline, lora_pipeline
    from pipelines.settings import CompileSettings

    pipeline = build_pipeline(CompileSettings(
        target="local", sweep=sweep, sweep_parallelism=sweep_parallelism)) if sweep \
        else lora_pipeline

    pipeline_root = run_root / "pipeline"
    resume_.drop_unfinished_steps(pipeline_root)  # an earlier attempt's, killed mid-step
    # Caching on, within this run folder only: a resumed run skips the steps that finished.
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
        enable_caching=True,
    )
    view = ProgressView(console)  # the running step's progress line
    log = ProgressStepLog(run_root / "steps.log", view, echo=sys.stdout if verbose else None)
    console.print(f"Running the pipeline; every step's output: {log.path}")
    timer = resume_.ResumableTimer(console, pipeline_root, log, interrupts=interrupts)
    root = logging.getLogger()
    root.addFilter(view)  # first: a step's progress line goes before its end line comes
    root.addFilter(timer)
    level = root.level
    root.setLevel(logging.INFO)  # kfp.local's "cache hit" record comes outside its own logger
    start = time.perf_counter()
    status = "SUCCESS"
    error: str | None = None
    interrupts.deferred = True
    try:
        with runner_output_to(log), view.steps_env():
            pipeline(**params)
    except RuntimeError as exc:
        status, error = "FAILURE", ANSI.sub("", str(exc))
    except resume_.Interrupted:
        status = "FAILURE"
    finally:
        interrupts.deferred = False
        root.removeFilter(view)
        root.removeFilter(timer)
        view.close()
        root.setLevel(level)
        timer.close_running()
        log.close()
    if timer.failure:  # "evaluate: out of memory (...)" says more than kfp's "Inner task failed"
        error = timer.failure
    if timer.disk_full or log.full:
        from cli.local_checks import _folder_bytes, write_estimate

        need = sum(write_estimate(params).values()) - _folder_bytes(run_root)
        failed = [n for n, v in timer.steps.items() if v["status"] != "SUCCESS"]
        step = timer.disk_full or (failed[-1] if failed else "the run")
        error = resume_.disk_full_line(step, run_root, need)
    if status != "SUCCESS" and interrupts.signum is not None:
        status = resume_.INTERRUPTED
        resume_.drop_unfinished_steps(pipeline_root)
    wall = time.perf_counter() - start
    run_dirs = sorted(pipeline_root.glob("*/")) if pipeline_root.exists() else []
    summary = build_summary(
        run_id, run_dirs[-1] if run_dirs else None, timer.steps, params, wall, status, run_root
    )
    if error:
        summary["error"] = error
    if defaults:
        summary["real_defaults_used"] = defaults
    if status == resume_.INTERRUPTED:
        summary["error"] = resume_.interrupted_line(summary, run_id, output_dir)
        summary["signal"] = signal.Signals(interrupts.signum or 0).name
    path, written = run_root / "summary.json", ""
    try:
        summary["report"] = publish_reports(summary, run_root)
        path.write_text(json.dumps(summary, indent=2, default=str))
    except OSError as exc:  # a full disk: the line below still says what happened
        summary["report"], written = {}, exc.strerror
        path.unlink(missing_ok=True)  # never an earlier attempt's summary taken for this one
    if status == resume_.INTERRUPTED:
        console.print(f"[bold yellow]{summary['error']}[/]", soft_wrap=True, highlight=False)
    elif status != "SUCCESS":
        console.print(f"[bold red]Pipeline failed:[/] {error}", soft_wrap=True)
        console.print(f"Every step's output: {log.path}")
    else:
        console.print(results_table(summary))
        console.print(f"[bold green]Done[/] in {wall:.0f} s. Report: "
                      f"{summary['report'].get('html', '-')}")
        if summary.get("merged_model"):
            console.print(f"Serve it: [bold]uv run submit serve {run_root}[/]")
    for line in tracking_lines(summary["tracking"]):
        console.print(f"  {line}", markup=False, highlight=False)
    if written:
        console.print(f"[red]could not write {path} ({written})[/]")
        raise typer.Exit(1)
    return path
