"""Vertex AI pipeline schedules: create, list, pause, resume, delete.

Two client pitfalls are handled here rather than trusted to the SDK:
- python-aiplatform#4039: `PipelineJob.create_schedule` has ignored the job's credentials and
  location in some releases, creating the schedule in the default project/region. We build
  `PipelineJobSchedule` ourselves and pass credentials, project and location explicitly.
- python-aiplatform#2929: the labels of scheduled runs have been overwritten/dropped. We write
  our labels (pipeline, git commit, user labels, schedule name) into the schedule's
  `create_pipeline_job_request` right before sending, so every scheduled run carries them.
"""

from __future__ import annotations

import re
from typing import Any

from components.common.errors import InputError

_CRON_ITEM = r"(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?"
_STEP = re.compile(r"/([0-9]+)")
_CRON_FIELD = re.compile(rf"^{_CRON_ITEM}(,{_CRON_ITEM})*$")
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = {
    3: {m: i + 1 for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )},
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}


def check_cron(cron: str) -> str:
    """A five-field cron expression (minute hour day month weekday), or InputError."""
    fields = cron.split()
    what = "minute hour day-of-month month day-of-week"
    if len(fields) != 5:
        raise InputError(f"cron {cron!r} needs 5 fields ({what}), e.g. '0 3 * * 1'")
    for i, field in enumerate(fields):
        lo, hi = _CRON_RANGES[i]
        bad = f"cron {cron!r}: field {i + 1} ({what.split()[i]}) {field!r}"
        if not _CRON_FIELD.match(field):
            raise InputError(f"{bad} is not valid")
        for step in _STEP.findall(field):
            if not 1 <= int(step) <= hi:
                raise InputError(f"{bad}: step /{step} must be between 1 and {hi} "
                                 f"(e.g. */15 for every 15)")
        for token in re.findall(r"[0-9A-Za-z]+", re.sub(r"/[0-9]+", "", field)):
            value = _NAMES.get(i, {}).get(token.lower()) if not token.isdigit() else int(token)
            if value is None or not lo <= value <= hi:
                raise InputError(f"{bad} is out of range {lo}-{hi}")
    return cron


def check_time_zone(tz: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown time zone {tz!r}; use an IANA name like Europe/Paris") from None
    return tz


def schedule_cron(cron: str, time_zone: str = "") -> str:
    """Vertex's cron string: 'TZ=Area/City m h dom mon dow' when a time zone is given."""
    check_cron(cron)
    return f"TZ={check_time_zone(time_zone)} {cron}" if time_zone else cron


def build_schedule(
    job: Any, display_name: str, labels: dict[str, str], credentials: Any, project: str,
    location: str,
) -> Any:
    """A PipelineJobSchedule for `job`, in the job's project/location with the job's labels."""
    from google.cloud import aiplatform

    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name=display_name, credentials=credentials,
        project=project, location=location,
    )
    request_job = schedule._gca_resource.create_pipeline_job_request.pipeline_job
    request_job.labels.clear()
    request_job.labels.update(labels)
    return schedule


def prepare_request(
    schedule: Any, cron: str, max_run_count: int | None, max_concurrent_run_count: int,
    service_account: str, network: str,
) -> Any:
    """Fill the schedule as `PipelineJobSchedule.create` would; return the CreateScheduleRequest."""
    from google.cloud.aiplatform.compat.types import schedule_service

    res = schedule._gca_resource
    res.cron = cron
    if max_run_count:
        res.max_run_count = max_run_count
    res.max_concurrent_run_count = max_concurrent_run_count
    if service_account:
        res.create_pipeline_job_request.pipeline_job.service_account = service_account
    if network:
        res.create_pipeline_job_request.pipeline_job.network = network
    return schedule_service.CreateScheduleRequest(parent=schedule._parent, schedule=res)


def create(
    schedule: Any, cron: str, max_run_count: int | None, max_concurrent_run_count: int,
    service_account: str, network: str,
) -> Any:
    """Send the schedule; its run labels were set in `build_schedule` (#2929)."""
    schedule._create(
        cron=cron,
        max_run_count=max_run_count,
        max_concurrent_run_count=max_concurrent_run_count,
        service_account=service_account or None,
        network=network or None,
    )
    return schedule


def schedule_name(schedule_id: str, project: str, location: str) -> str:
    """`123` -> `projects/P/locations/R/schedules/123`; a full resource name stays as it is."""
    if schedule_id.startswith("projects/"):
        return schedule_id
    if not re.fullmatch(r"[0-9]+", schedule_id):
        raise InputError(f"schedule id {schedule_id!r} is neither a number nor "
                         "projects/P/locations/R/schedules/ID; see `submit schedule list`")
    return f"projects/{project}/locations/{location}/schedules/{schedule_id}"


def action_request(action: str, schedule_id: str, project: str, location: str) -> dict[str, Any]:
    """What `pause`/`resume`/`delete` would send, for --dry-run (no credentials needed)."""
    method = {"pause": "PauseSchedule", "resume": "ResumeSchedule", "delete": "DeleteSchedule"}
    return {"method": f"google.cloud.aiplatform.v1.ScheduleService.{method[action]}",
            "request": {"name": schedule_name(schedule_id, project, location)}}


def _get(schedule_id: str, project: str, location: str, credentials: Any = None) -> Any:
    from google.cloud import aiplatform

    return aiplatform.PipelineJobSchedule.get(
        schedule_id=schedule_id, project=project, location=location, credentials=credentials
    )


def list_schedules(project: str, location: str, credentials: Any = None) -> list[dict[str, Any]]:
    from google.cloud import aiplatform

    rows = []
    for s in aiplatform.PipelineJobSchedule.list(
        project=project, location=location, credentials=credentials
    ):
        r = s._gca_resource
        rows.append({"name": r.name, "display_name": r.display_name, "state": r.state.name,
                     "cron": r.cron, "started_runs": r.started_run_count})
    return rows


def pause(schedule_id: str, project: str, location: str, credentials: Any = None) -> str:
    s = _get(schedule_id, project, location, credentials)
    s.pause()
    return s.resource_name


def resume(schedule_id: str, project: str, location: str, credentials: Any = None) -> str:
    s = _get(schedule_id, project, location, credentials)
    s.resume()
    return s.resource_name


def delete(schedule_id: str, project: str, location: str, credentials: Any = None) -> str:
    s = _get(schedule_id, project, location, credentials)
    name = s.resource_name
    s.delete()
    return name
