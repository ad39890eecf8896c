"""Vertex AI pipeline schedules: create, list, pause, resume, delete.

Two client pitfalls are handled here rather than trusted to the SDK:
- python-aiplatform#4039: `PipelineJob.create_schedule` has ignored the job's credentials and
  location in some releases, creating the schedule in the default project/region.
- python-aiplatform#2929: the labels of scheduled runs have been overwritten/dropped.
So the CreateScheduleRequest is built here, from the job's public `to_dict()` and the public
`aiplatform_v1` types, with the project, location and our labels (pipeline, git commit, user
labels, schedule name) written in, and sent with the public ScheduleServiceClient: no private
attribute of the SDK is read or written.
"""

from __future__ import annotations

import json
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


# The parts of a PipelineJob a scheduled run is created from (as PipelineJobSchedule copies them).
_SCHEDULED_JOB_FIELDS = ("runtimeConfig", "pipelineSpec", "templateUri", "encryptionSpec",
                         "reservedIpRanges")


def create_request(
    job: Any, display_name: str, labels: dict[str, str], cron: str, max_run_count: int | None,
    max_concurrent_run_count: int, service_account: str, network: str, project: str,
    location: str,
) -> Any:
    """The CreateScheduleRequest for `job` on `cron`, built from the job's public `to_dict()`
    with the public v1 types: in the given project/location (#4039) and with our labels on
    every scheduled run (#2929). `--dry-run` prints it; `create` sends it."""
    from google.cloud.aiplatform_v1.types import (
        CreatePipelineJobRequest,
        CreateScheduleRequest,
        PipelineJob,
        Schedule,
    )

    parent = f"projects/{project}/locations/{location}"
    built = job.to_dict()
    pipeline_job = PipelineJob.from_json(json.dumps(
        {k: built[k] for k in _SCHEDULED_JOB_FIELDS if k in built}))
    pipeline_job.labels.update(labels)
    if service_account:
        pipeline_job.service_account = service_account
    if network:
        pipeline_job.network = network
    schedule = Schedule(
        display_name=display_name, cron=cron, max_concurrent_run_count=max_concurrent_run_count,
        create_pipeline_job_request=CreatePipelineJobRequest(parent=parent,
                                                             pipeline_job=pipeline_job),
    )
    if max_run_count:
        schedule.max_run_count = max_run_count
    return CreateScheduleRequest(parent=parent, schedule=schedule)


def create(request: Any, location: str, credentials: Any = None) -> str:
    """Send a CreateScheduleRequest to the region's endpoint; returns the schedule's name."""
    from google.cloud.aiplatform_v1 import ScheduleServiceClient

    client = ScheduleServiceClient(
        credentials=credentials,
        client_options={"api_endpoint": f"{location}-aiplatform.googleapis.com"},
    )
    return client.create_schedule(parent=request.parent, schedule=request.schedule).name


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
        r = s.gca_resource
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
