"""`submit batch list | status | logs | cancel`: watch and stop `submit --batch` jobs.

    uv run submit --project P --region us-central1 batch status dolly-lora-20261207-120000
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from cli.app import app, guard, options

batch_app = typer.Typer(help="Cloud Batch jobs of `submit --batch`.", no_args_is_help=True)
app.add_typer(batch_app, name="batch")
Job = Annotated[str, typer.Argument(help="Job name (the run id submit --batch printed).")]
# The log name Batch writes a task's stdout/stderr under (cloud.google.com/batch/docs/
# analyze-job-using-logs).
TASK_LOG = "batch_task_logs"


def client() -> Any:
    from google.cloud import batch_v1

    return batch_v1.BatchServiceClient()


def _where(ctx: typer.Context) -> tuple[str, str]:
    opts = options(ctx)
    if not opts.project or not opts.region:
        from components.common.errors import InputError

        raise InputError("pass --project and --region (or DOLLY_LORA_PROJECT, DOLLY_LORA_REGION)")
    return opts.project, opts.region


def status_lines(job: Any, now: datetime | None = None) -> list[str]:
    """State, attempts, elapsed, cost so far (elapsed x the machine's hourly price) and the VM."""
    from planning.prices import price

    policy = job.allocation_policy.instances[0].policy if job.allocation_policy.instances else None
    spot = policy is not None and policy.provisioning_model.name == "SPOT"
    events = list(job.status.status_events)
    attempts = 1 + sum("retry" in e.description.lower() for e in events)
    start = job.create_time
    end = (now or datetime.now(UTC)) if job.status.state.name in (
        "QUEUED", "SCHEDULED", "RUNNING") else (job.update_time or start)
    elapsed = max(0.0, (end - start).total_seconds()) if start else 0.0
    if job.status.run_duration:
        elapsed = job.status.run_duration.total_seconds()
    p = price(policy.machine_type, "SPOT" if spot else "STANDARD") if policy else None
    cost = f"${elapsed / 3600 * p.usd_per_hour:.2f}" if p else "unknown (no price)"
    out = [f"{job.name.rsplit('/', 1)[-1]}: {job.status.state.name}",
           f"  attempts: {attempts} (retries on preemption, exit code 50001, only)",
           f"  elapsed: {elapsed / 60:.1f} min; cost so far: {cost}",
           f"  the VM: gcloud compute instances list --filter=labels.batch-job-uid={job.uid}"]
    out += [f"  {e.event_time:%H:%M:%S} {e.description}" for e in events[-5:]]
    return out


@batch_app.command("list")
def batch_list(ctx: typer.Context) -> None:
    """Every Batch job of this project and region, newest first."""
    def body() -> None:
        project, region = _where(ctx)
        jobs = client().list_jobs(parent=f"projects/{project}/locations/{region}")
        for job in sorted(jobs, key=lambda j: j.create_time, reverse=True):
            print(f"{job.name.rsplit('/', 1)[-1]}\t{job.status.state.name}\t{job.create_time:%Y-%m-%d %H:%M}")

    guard(body, "Cloud Batch")


@batch_app.command("status")
def batch_status(ctx: typer.Context, job: Job) -> None:
    """State, attempts, elapsed time, cost so far and the VM of one job."""
    def body() -> None:
        project, region = _where(ctx)
        found = client().get_job(name=f"projects/{project}/locations/{region}/jobs/{job}")
        print("\n".join(status_lines(found)))

    guard(body, "Cloud Batch")


@batch_app.command("cancel")
def batch_cancel(ctx: typer.Context, job: Job) -> None:
    """Delete the job; Batch deletes its VM and disk with it."""
    def body() -> None:
        project, region = _where(ctx)
        client().delete_job(name=f"projects/{project}/locations/{region}/jobs/{job}")
        print(f"deleting {job}; its VM goes with it (check: gcloud compute instances list)")

    guard(body, "Cloud Batch")


def log_filter(uid: str, after: str = "") -> str:
    """Cloud Logging filter for the task's stdout/stderr, after a timestamp cursor."""
    f = f'labels.job_uid="{uid}" AND logName:"{TASK_LOG}"'
    return f + (f' AND timestamp>"{after}"' if after else "")


def follow_logs(logging_client: Any, uid: str, follow: bool, done: Callable[[], bool],
                since: str, sleep: Callable[[float], None] = time.sleep,
                every: float = 10.0) -> None:
    """Print the task's log lines after `since` (the job's creation; the client would otherwise
    read only the last 24 h); with `follow`, poll from the last timestamp until `done`, then
    once more for the lines written before the end."""
    cursor, last = since, False
    while True:
        for entry in logging_client.list_entries(filter_=log_filter(uid, cursor),
                                                 order_by="timestamp asc"):
            print(entry.payload)
            cursor = entry.timestamp.isoformat()
        if not follow or last:
            return
        last = done()
        if not last:
            sleep(every)


@batch_app.command("logs")
def batch_logs(ctx: typer.Context, job: Job,
               follow: Annotated[bool, typer.Option("--follow", "-f",
                                                    help="Keep printing until the job ends.")] = False,
               ) -> None:
    """The task's output (stdout and stderr) from Cloud Logging."""
    def body() -> None:
        from google.cloud import logging as gcl

        project, region = _where(ctx)
        name = f"projects/{project}/locations/{region}/jobs/{job}"
        batch = client()
        found = batch.get_job(name=name)

        def done() -> bool:
            return batch.get_job(name=name).status.state.name in ("SUCCEEDED", "FAILED",
                                                                  "DELETION_IN_PROGRESS")

        follow_logs(gcl.Client(project=project), found.uid, follow, done,
                    since=found.create_time.isoformat())

    guard(body, "Cloud Logging")
