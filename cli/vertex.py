"""Vertex AI Pipelines: settings, labels, the job request, submit, --wait and uploads to
Artifact Registry.

Why a module apart from `cli.submit`: `google.cloud.aiplatform` takes 17-19 s to import, so it is
imported here, inside the functions that talk to Vertex, and `submit --help` never pays for it.
Everything a user can get wrong (project, region, root, template, labels, parameters) is checked
by `VertexSettings` and `load_template` before that import and before anything is sent.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cli.templates import custom_jobs, load_template, registry_model
from components.common.errors import InputError, validation_error
from pipelines.compiler import DEFAULT_TEMPLATE, RUN_ID_PREFIX, default_run_id

PIPELINE_LABEL = RUN_ID_PREFIX

# Regions where Vertex AI Pipelines runs (a subset of aiplatform's SUPPORTED_REGIONS; a test
# keeps it so). Checked here so a typo fails in a second, not after a 17 s import.
VERTEX_REGIONS: frozenset[str] = frozenset(
    """
    africa-south1 asia-east1 asia-east2 asia-northeast1 asia-northeast2 asia-northeast3
    asia-south1 asia-southeast1 asia-southeast2 australia-southeast1 australia-southeast2
    europe-central2 europe-north1 europe-southwest1 europe-west1 europe-west2 europe-west3
    europe-west4 europe-west6 europe-west8 europe-west9 europe-west12 me-central1 me-central2
    me-west1 northamerica-northeast1 northamerica-northeast2 southamerica-east1
    southamerica-west1 us-central1 us-east1 us-east4 us-east5 us-south1 us-west1 us-west2
    us-west3 us-west4
    """.split()  # noqa: SIM905 - a word list reads better than 38 quoted strings
)
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
PROJECT_ID = re.compile(r"^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
JOB_ID = re.compile(r"^[a-z][a-z0-9-]{0,127}$")
TERMINAL = {"PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED",
            "PIPELINE_STATE_PAUSED"}


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """`["team=ml", "cost-center=42"]` (or one comma-separated item) -> dict, Vertex rules."""
    labels: dict[str, str] = {}
    for item in (p for pair in pairs for p in pair.split(",") if p.strip()):
        key, sep, value = item.strip().partition("=")
        if not sep or not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
            raise InputError(
                f"label {item!r} must be key=value, lowercase letters, digits, '-' or '_' "
                "(key starts with a letter, each at most 63 characters)"
            )
        labels[key] = value
    return labels


class VertexSettings(BaseModel):
    """Where and how a pipeline job runs on Vertex AI; every field from a flag or env var."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(description="Google Cloud project id.")
    region: str = Field(description="Vertex AI region, e.g. us-central1.")
    pipeline_root: str = Field(description="gs:// folder for the pipeline's artifacts.")
    service_account: str = ""
    network: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    experiment: str = ""
    enable_caching: bool | None = None
    template: str = str(DEFAULT_TEMPLATE)
    job_id: str = ""

    @field_validator("project")
    @classmethod
    def _project(cls, v: str) -> str:
        if not PROJECT_ID.match(v):
            raise ValueError(f"{v!r} is not a Google Cloud project id (e.g. my-proj-123)")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v not in VERTEX_REGIONS:
            import difflib

            close = difflib.get_close_matches(v, sorted(VERTEX_REGIONS), n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ValueError(f"unknown Vertex AI region {v!r}{hint}")
        return v

    @field_validator("pipeline_root")
    @classmethod
    def _root(cls, v: str) -> str:
        if not re.match(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$", v):
            raise ValueError(f"pipeline root must be a gs:// bucket path, got {v!r}")
        return v.rstrip("/")

    @field_validator("service_account")
    @classmethod
    def _sa(cls, v: str) -> str:
        if v and not re.match(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$|^[^@\s]+@[^@\s]+$", v):
            raise ValueError(f"{v!r} is not a service account email")
        return v

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, v: str) -> str:
        if v and not JOB_ID.match(v):
            raise ValueError(f"job id {v!r}: a lowercase letter, then lowercase letters, digits "
                             "and '-', at most 128")
        return v

    @classmethod
    def build(cls, **values: Any) -> VertexSettings:
        """Validate, with one readable InputError naming each missing or bad option."""
        flags = {"project": "--project", "region": "--region", "pipeline_root": "--pipeline-root"}
        missing = [flags[k] for k in flags if not values.get(k)]
        if missing:
            raise InputError(f"missing {', '.join(missing)} (or its environment variable; "
                             "see `submit --help`)")
        try:
            return cls(**{k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            raise validation_error(exc, "settings") from None


def job_labels(settings: VertexSettings, commit: str) -> dict[str, str]:
    """Pipeline name and git commit on every job (cost reports); the user's labels win."""
    return {"pipeline": PIPELINE_LABEL, "git-commit": commit[:63], **settings.labels}


def build_job(
    settings: VertexSettings, parameter_values: dict[str, Any], labels: dict[str, str],
    credentials: Any = None,
) -> Any:
    """An `aiplatform.PipelineJob` (built offline; nothing is sent)."""
    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name=PIPELINE_LABEL,
        template_path=settings.template,
        job_id=settings.job_id or default_run_id(),
        pipeline_root=settings.pipeline_root,
        parameter_values=parameter_values,
        enable_caching=settings.enable_caching,
        labels=labels,
        project=settings.project,
        location=settings.region,
        credentials=credentials,
    )


def parent(settings: VertexSettings) -> str:
    """The location every request of this submission goes to."""
    return f"projects/{settings.project}/locations/{settings.region}"


def create_request(job: Any, settings: VertexSettings) -> Any:
    """The CreatePipelineJobRequest `submit` sends for `job`: the job as built (its public
    `to_dict()`), with the identity and network `PipelineJob.submit` sets. `job` is unchanged."""
    from google.cloud.aiplatform_v1.types import CreatePipelineJobRequest, PipelineJob

    resource = PipelineJob.from_json(json.dumps(job.to_dict()))
    if settings.service_account:
        resource.service_account = settings.service_account
    if settings.network:
        resource.network = settings.network
    return CreatePipelineJobRequest(parent=parent(settings), pipeline_job=resource,
                                    pipeline_job_id=job.job_id)


def dry_run(settings: VertexSettings, parameter_values: dict[str, Any],
            labels: dict[str, str], base_model: str) -> dict[str, Any]:
    """Everything `submit --dry-run` prints: the exact request, built offline by the real client
    with anonymous credentials (nothing is sent), and each custom job as it will run."""
    job = build_job(settings, parameter_values, labels, credentials=dry_run_credentials())
    spec = load_template(settings.template)
    out = {"method": "google.cloud.aiplatform.v1.PipelineService.CreatePipelineJob",
           "request": request_json(create_request(job, settings)),
           # What Vertex resolves the custom jobs' run-time placeholders to.
           "custom_jobs": custom_jobs(spec, settings)}
    if spec is not None:
        out["registry_model"] = registry_model(spec, base_model)
    if settings.experiment:
        out["experiment"] = settings.experiment
    return out


def request_json(request: Any) -> dict[str, Any]:
    """A proto-plus request as plain JSON (camelCase field names, as on the wire)."""
    return json.loads(type(request).to_json(request, always_print_fields_with_no_presence=False))


def dry_run_credentials() -> Any:
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def console_link(resource_name: str) -> str:
    """The Vertex console page of a pipeline job, from its resource name
    (projects/P/locations/L/pipelineJobs/ID)."""
    parts = resource_name.split("/")
    fields = dict(zip(parts[::2], parts[1::2], strict=False))
    return (f"https://console.cloud.google.com/vertex-ai/locations/{fields['locations']}"
            f"/pipelines/runs/{fields['pipelineJobs']}?project={fields['projects']}")


def submit(job: Any, settings: VertexSettings) -> str:
    """Create the job on Vertex AI; returns its console link."""
    job.submit(
        service_account=settings.service_account or None,
        network=settings.network or None,
        experiment=settings.experiment or None,
    )
    return console_link(job.resource_name)


def failed_tasks(task_details: list[Any]) -> list[str]:
    """Names of the tasks that failed, from `PipelineJob.task_details`."""
    return [t.task_name for t in task_details or []
            if getattr(t.state, "name", str(t.state)) == "FAILED"]


def _sleep(seconds: float) -> None:
    """Between polls of a running job (a seam, so tests never sleep)."""
    time.sleep(seconds)


def wait(job: Any, poll_seconds: float = 30.0, echo: Callable[[str], None] = print) -> str:
    """Follow the job until it ends, echoing each state change; returns the final state name,
    raises if it did not succeed. Polls the public `state` (each read fetches the job) rather
    than `PipelineJob.wait()`, which logs nothing on a state change and sleeps on its own."""
    last = None
    while True:
        state = job.state.name
        if state != last:
            echo(f"{dt.datetime.now():%H:%M:%S} {job.job_id}: {state}")
            last = state
        if state in TERMINAL:
            break
        _sleep(poll_seconds)
    if state != "PIPELINE_STATE_SUCCEEDED":
        error = job.gca_resource.error.message  # the resource `state` just fetched
        tasks = failed_tasks(job.task_details)
        raise RuntimeError(
            f"pipeline job {job.job_id} ended {state.removeprefix('PIPELINE_STATE_')}"
            + (f"; failed task: {', '.join(tasks)}" if tasks else "")
            + (f" ({error})" if error else "")
        )
    return state


def upload_template(
    template: Path, project: str, region: str, repo: str, tags: list[str], auth: Any = None
) -> tuple[str, str]:
    """Push a compiled template to an Artifact Registry KFP repository; (package, version)."""
    load_template(str(template))
    from kfp.registry import RegistryClient

    client = RegistryClient(host=f"https://{region}-kfp.pkg.dev/{project}/{repo}", auth=auth)
    return client.upload_pipeline(file_name=str(template), tags=tags)
