"""`submit schedule create | list | pause | resume | delete`: the pipeline on a cron schedule.

    uv run submit schedule create --cron "0 3 * * 1"           # (project etc. from env/.env)
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.app import app, guard, location, options

schedule_app = typer.Typer(help="Vertex AI pipeline schedules (cron).", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("create")
def schedule_create(
    ctx: typer.Context,
    cron: Annotated[str, typer.Option(help="Cron, 5 fields, e.g. '0 3 * * 1' (Mon 03:00).")],
    time_zone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Paris.")] = "",
    max_runs: Annotated[int | None, typer.Option(min=1, help="Stop after N runs.")] = None,
    max_concurrent: Annotated[int, typer.Option(min=1, help="Runs at once.")] = 1,
    name: Annotated[str, typer.Option(help="Schedule display name.")] = "dolly-lora-schedule",
) -> None:
    """Run the pipeline on a cron schedule (same options as a one-off submit)."""
    opts = options(ctx)

    def body() -> None:
        from cli import schedules, vertex
        from cli.submission import vertex_job

        cron_spec = schedules.schedule_cron(cron, time_zone)
        settings, values, labels, _ = vertex_job(opts)
        labels = {**labels, "schedule": vertex.re.sub(r"[^a-z0-9_-]", "-", name.lower())[:63]}
        creds = vertex.dry_run_credentials() if opts.dry_run else None
        job = vertex.build_job(settings, values, labels, credentials=creds)
        request = schedules.create_request(
            job, name, labels, cron_spec, max_runs, max_concurrent, settings.service_account,
            settings.network, settings.project, settings.region,
        )
        if opts.dry_run:
            print(json.dumps({
                "method": "google.cloud.aiplatform.v1.ScheduleService.CreateSchedule",
                "request": vertex.request_json(request)}, indent=2, sort_keys=True))
            return
        print(schedules.create(request, settings.region, credentials=job.credentials))

    guard(body, "Vertex AI")


@schedule_app.command("list")
def schedule_list(ctx: typer.Context) -> None:
    """List the project's pipeline schedules in the region."""
    opts = options(ctx)

    def body() -> None:
        from cli import schedules
        from cli.failures import require_credentials

        where = location(opts)
        require_credentials("Vertex AI")
        for row in schedules.list_schedules(*where):
            print(json.dumps(row))

    guard(body, "Vertex AI")


def _schedule_action(ctx: typer.Context, schedule_id: str, action: str) -> None:
    opts = options(ctx)

    def body() -> None:
        from cli import schedules
        from cli.failures import require_credentials

        project, region = location(opts)
        if opts.dry_run:  # the request it would send; no credentials, nothing sent
            print(json.dumps(schedules.action_request(action, schedule_id, project, region),
                             indent=2, sort_keys=True))
            return
        require_credentials("Vertex AI")  # in a second, before aiplatform's 17 s import
        name = getattr(schedules, action)(schedule_id, project, region)
        print(f"{action}: {name}")

    guard(body, "Vertex AI")


@schedule_app.command("pause")
def schedule_pause(ctx: typer.Context, schedule_id: str) -> None:
    """Pause a schedule (id or full resource name)."""
    _schedule_action(ctx, schedule_id, "pause")


@schedule_app.command("resume")
def schedule_resume(ctx: typer.Context, schedule_id: str) -> None:
    """Resume a paused schedule."""
    _schedule_action(ctx, schedule_id, "resume")


@schedule_app.command("delete")
def schedule_delete(ctx: typer.Context, schedule_id: str) -> None:
    """Delete a schedule."""
    _schedule_action(ctx, schedule_id, "delete")
