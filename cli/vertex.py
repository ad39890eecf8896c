"""Vertex AI Pipelines: settings, labels, the job request, submit and --wait.

Why a module apart from `cli.submit`: `google.cloud.aiplatform` takes 17-19 s to import, so it is
imported here, inside the functions that talk to Vertex, and `submit --help` never pays for it.
Everything a user can get wrong (project, region, root, template, labels, parameters) is checked
by `VertexSettings` and `load_template` before that import and before anything is sent.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from components.common.errors import InputError, validation_error
from pipelines.compiler import (
    DEFAULT_TEMPLATE,
    DEFAULT_TEMPLATES,
    RUN_ID_PREFIX,
    default_run_id,
    git_commit,
    read_stamp,
)

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
AR_TEMPLATE = re.compile(
    r"^https://(?P<region>[a-z0-9-]+)-kfp\.pkg\.dev/(?P<project>[^/]+)/(?P<repo>[^/]+)"
    r"/(?P<package>[^/]+)/(?P<ref>[A-Za-z0-9_.:-]+)$"
)
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
PROJECT_ID = re.compile(r"^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
JOB_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
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
            raise ValueError(f"job id {v!r}: lowercase letters, digits and '-', at most 128")
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


def load_template(template: str) -> dict[str, Any] | None:
    """The compiled pipeline spec of a local template (None for an Artifact Registry one)."""
    if template.startswith("https://"):
        if not AR_TEMPLATE.match(template):
            raise InputError(f"{template!r} is not an Artifact Registry template URL like "
                             "https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE/TAG")
        return None
    path = Path(template)
    if not path.is_file():
        raise InputError(f"template {template} does not exist; run `uv run python compile.py`")
    stat = path.stat()
    return copy.deepcopy(_parse_template(str(path.resolve()), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _parse_template(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """Parsed once per file version: a submit reads its template for several checks."""
    try:  # a KFP template with platform settings (--target kfp) is two YAML documents
        spec = next(iter(yaml.safe_load_all(Path(path).read_text())), None)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"template {path} is not YAML ({exc.__class__.__name__})") from None
    if not isinstance(spec, dict) or not {"pipelineInfo", "root", "deploymentSpec"} <= set(spec):
        raise InputError(f"template {path} is not a compiled KFP pipeline")
    return spec


def template_images(spec: dict[str, Any]) -> set[str]:
    """Every container image a compiled spec runs (executors and custom-job worker pools)."""
    text = json.dumps(spec.get("deploymentSpec", {}))
    return set(re.findall(r'"(?:image|image_uri)": "([^"]+)"', text))


def check_parameters(spec: dict[str, Any] | None, values: dict[str, Any]) -> None:
    """Refuse overrides the template does not declare (an older or foreign template)."""
    if spec is None:
        return
    declared = set(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))
    unknown = sorted(set(values) - declared)
    if unknown:
        raise InputError(f"the template has no parameter {', '.join(unknown)}; recompile it")


def resolve_template(template: str | None, r: Any) -> tuple[str, str]:
    """(template to send, note for the user). A template must match the code and the compile
    settings asked for (`r.asked`: DOLLY_LORA_* variables, the target, `--profile`): the default
    one under build/ is compiled for `r.settings` when missing or stale (`resolve` kept the
    settings it was compiled with under the ones asked for); one the user named is refused when
    stale."""
    from pipelines.compiler import compile_pipeline, stale_reasons

    wanted, target = r.asked, r.settings.target
    if template and template.startswith("https://"):
        load_template(template)  # an Artifact Registry URL: checked for shape only
        return template, ""
    if template:
        load_template(template)
        reasons = stale_reasons(read_stamp(Path(template)), wanted)
        if reasons:
            flags = (" --target kfp" if target == "kfp" else "") + (
                f" --profile {wanted['profile']}" if wanted.get("profile") else "")
            raise InputError(
                f"template {template} does not match what this submit asks for: "
                f"{'; '.join(reasons)}; recompile it (uv run python compile.py{flags} "
                f"--out {template} [--image ...]) or leave out --template"
            )
        return template, ""
    path = DEFAULT_TEMPLATES[target]
    stamp = read_stamp(path) if path.exists() else None
    reasons = stale_reasons(stamp, wanted) if path.exists() else ["it did not exist"]
    if not reasons:
        return str(path), ""
    compile_pipeline(path, r.settings)
    return str(path), f"compiled {path}: {'; '.join(reasons)}"


def template_commit(template: str) -> str:
    """The commit a template was compiled from (its stamp), else this checkout's."""
    stamp = None if template.startswith("https://") else read_stamp(Path(template))
    return str((stamp or {}).get("commit") or git_commit())


def check_model_access(base_model: str, hf_token_secret: str, public_model: bool) -> None:
    """A Hugging Face Hub model with no token secret fails only in the cloud, after the machines
    start (Gemma is gated): refuse here, naming the flag, unless the user says it is public."""
    from components.common.modeling import is_hub_id

    if public_model or hf_token_secret or not is_hub_id(str(base_model)):
        return
    raise InputError(
        f"base_model {base_model} comes from the Hugging Face Hub and no HF token secret is "
        "given; gated models (Gemma) fail after the machines start. Pass --hf-token-secret "
        "projects/PROJECT/secrets/hf-token (docs/vertex.md, Secrets), or --public-model if the "
        "model needs no token"
    )


def training_strategy(spec: dict[str, Any]) -> str:
    """Capacity kind (STANDARD, SPOT, FLEX_START) the template trains on."""
    params = spec.get("components", {}).get("comp-fine-tune", {}).get(
        "inputDefinitions", {}).get("parameters", {})
    return str(params.get("strategy", {}).get("defaultValue", "STANDARD"))


def custom_jobs(spec: dict[str, Any] | None, settings: VertexSettings) -> dict[str, Any]:
    """Each custom job of a template as it will run: machine, capacity, and the identity and
    network its run-time placeholders resolve to for this submission."""
    from pipelines.machines import NETWORK_PLACEHOLDER, SERVICE_ACCOUNT_PLACEHOLDER

    resolved = {
        SERVICE_ACCOUNT_PLACEHOLDER: settings.service_account
        or "the project's Compute Engine default service account (no --service-account)",
        NETWORK_PLACEHOLDER: settings.network,
    }
    jobs: dict[str, Any] = {}
    for comp in (spec or {}).get("components", {}).values():
        params = comp.get("inputDefinitions", {}).get("parameters", {})
        if "worker_pool_specs" not in params:
            continue

        def value(name: str, params: dict[str, Any] = params) -> Any:
            return params.get(name, {}).get("defaultValue")

        pool = value("worker_pool_specs")[0]
        jobs[value("display_name")] = {
            "machine_spec": pool["machine_spec"],
            "strategy": value("strategy"),
            "service_account": resolved.get(value("service_account"), value("service_account")),
            "network": resolved.get(value("network"), value("network")),
            **({"tensorboard": value("tensorboard"),
                "base_output_directory": value("base_output_directory")}
               if value("tensorboard") else {}),
        }
    return jobs


def registry_model(spec: dict[str, Any], base_model: str) -> str:
    """The Model Registry model a run of this template adds its version to (if the gate
    passes): the name compiled in, else the one register-model derives from the run's base
    model."""
    from components.register.register import display_name_for

    for comp in spec.get("components", {}).values():
        task = comp.get("dag", {}).get("tasks", {}).get("register-model")
        if task:
            named = task["inputs"]["parameters"].get("display_name", {})
            if named.get("runtimeValue", {}).get("constant"):
                return str(named["runtimeValue"]["constant"])
    return display_name_for(base_model)


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


def check_kfp_host(host: str) -> str:
    """An http(s) URL with a host, or one line saying what a KFP endpoint looks like."""
    from urllib.parse import urlparse

    url = urlparse(host)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InputError(
            f"--kfp-host {host!r} is not a URL; give the Kubeflow Pipelines endpoint as "
            "http(s)://HOST[:PORT], e.g. http://localhost:8080 after `kubectl port-forward "
            "-n kubeflow svc/ml-pipeline-ui 8080:80`"
        )
    return host


def kfp_client(host: str, client_factory: Callable[..., Any] | None = None) -> Any:
    """A kfp.Client for `host`; creating it asks the endpoint's health, so a host that does not
    answer fails here (as one line, `cli.failures`), before anything is compiled or sent."""
    import logging
    import warnings

    if client_factory is None:
        import kfp

        client_factory = kfp.Client
    retries = logging.getLogger("urllib3.connectionpool")
    level = retries.level
    retries.setLevel(logging.ERROR)  # its "Retrying ..." lines: the one error line says it all
    try:
        with warnings.catch_warnings():  # "This client only works with ... v2.0.0-beta.2 ..."
            warnings.simplefilter("ignore", FutureWarning)
            return client_factory(host=host)
    finally:
        retries.setLevel(level)


def check_remote_inputs(values: dict[str, Any]) -> None:
    """A local file given as dataset, prompts_uri or base_model cannot be read by a step running
    on Vertex or a KFP cluster: say so now, with the upload that fixes it."""
    for name in ("dataset", "prompts_uri", "base_model"):
        value = str(values.get(name) or "")
        if value and "://" not in value and Path(value).expanduser().exists():
            raise InputError(
                f"{name}={value} is a file on this machine, which the pipeline's steps cannot "
                f"read; upload it (gcloud storage cp -r {value} gs://BUCKET/PATH) and pass "
                "its gs:// URI"
            )


def submit_kfp(
    host: str, template: Path, parameter_values: dict[str, Any], run_name: str,
    experiment: str, enable_caching: bool | None, service_account: str,
    client_factory: Callable[..., Any] | None = None,
) -> str:
    """Submit the same YAML to an open-source Kubeflow Pipelines endpoint; returns the run id."""
    load_template(str(template))
    if client_factory is None:
        import kfp

        client_factory = kfp.Client
    client = client_factory(host=host)
    run = client.create_run_from_pipeline_package(
        pipeline_file=str(template),
        arguments=parameter_values,
        run_name=run_name,
        experiment_name=experiment or None,
        enable_caching=enable_caching,
        service_account=service_account or None,
    )
    return run.run_id
