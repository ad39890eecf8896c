"""Deploy a registered model version to a Vertex AI endpoint, replacing what it served only once the
new version is up; undeploy it again.

Why hand-built GAPIC requests rather than `aiplatform.Model.deploy`: `submit deploy --dry-run`
prints exactly what is sent, and the tests capture exactly that. The order makes a bad deploy
cost nothing and leak nothing: check everything first; reuse this project's endpoint (label
`source=dolly-lora`, or its display name); with a time to live, create the one-run Vertex
schedule that undeploys it (`components.deploy.ttl`); deploy with all traffic to the new version
only once it is healthy, waiting longer than the container's own deployment timeout; then
undeploy the old ones. On failure, what of this version appeared is undeployed and an endpoint
this run created is deleted; nothing that was there before is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from components.common.config import DeployConfig
from components.common.errors import InputError
from components.common.serving import DEPLOYMENT_TIMEOUT_S, label_value

# What the CLI may call: the step's public entry points (tests/unit/test_layout.py).
__all__ = ["Clients", "DeployFailed", "DeployTarget", "check_endpoint", "check_ttl", "deploy",
           "endpoint_resource_name", "find_endpoint", "list_endpoints", "planned_requests",
           "run_deploy", "undeploy"]

MODEL_NAME = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/models/(?P<id>[^/@]+)"
    r"(@(?P<version>[^/@]+))?$"
)
ENDPOINT_NAME = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/endpoints/(?P<id>[^/]+)$"
)
BARE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
# How long deploy waits: the container's own deployment timeout (serving.DEPLOYMENT_TIMEOUT_S,
# on the registered version) plus this margin for the machine and the image pull.
DEPLOY_MARGIN_S = 1800
LABEL = ("source", "dolly-lora")


@dataclass(frozen=True)
class DeployTarget:
    """What to deploy where, on which machine."""

    project: str
    region: str
    model: str  # a model version: ID, ID@VERSION or its resource name
    # The machine: pipelines/machines.py SERVING_MACHINE (planning/machines.py describes it).
    machine_type: str
    accelerator_type: str
    accelerator_count: int
    endpoint: str = ""  # endpoint ID or resource name; '' = create one
    endpoint_display_name: str = "dolly-lora-endpoint"
    min_replicas: int = 1
    max_replicas: int = 1
    service_account: str = ""
    labels: dict[str, str] = field(default_factory=lambda: dict([LABEL]))
    ttl_hours: float = 8.0  # 0: no time to live
    image: str = ""  # the image the TTL undeploy step runs in
    pipeline_root: str = ""  # gs:// folder of the TTL run

    def __post_init__(self) -> None:
        if self.ttl_hours < 0:
            raise InputError(f"deploy TTL {self.ttl_hours} h: give 0 (none) or more hours")
        if self.min_replicas < 1 or self.max_replicas < self.min_replicas:
            raise InputError(
                f"replicas min={self.min_replicas} max={self.max_replicas}: need "
                "1 <= min <= max (an endpoint serves from at least one machine)"
            )

    @property
    def model_version(self) -> str:
        return model_version_name(self.model, self.project, self.region)

    @property
    def endpoint_name(self) -> str:
        return endpoint_resource_name(self.endpoint, self.project, self.region) if self.endpoint \
            else ""

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"


def model_version_name(model: str, project: str, region: str) -> str:
    """`ID`, `ID@VERSION` or `projects/P/locations/R/models/ID[@VERSION]` -> the resource name
    of one version (no version: the default one). A model in another region is refused."""
    model = model.strip()
    if m := MODEL_NAME.match(model):
        if m["region"] != region:
            raise InputError(
                f"model {model} is in {m['region']}, not in --region {region}; deploy it in "
                f"its own region (--region {m['region']})"
            )
        version = m["version"] or "default"
        return f"projects/{m['project']}/locations/{region}/models/{m['id']}@{version}"
    model_id, _, version = model.partition("@")
    if not BARE_ID.match(model_id) or (version and not BARE_ID.match(version)):
        raise InputError(
            f"{model!r} is not a model version; give MODEL_ID[@VERSION] or "
            "projects/P/locations/R/models/MODEL_ID[@VERSION]"
        )
    return f"projects/{project}/locations/{region}/models/{model_id}@{version or 'default'}"


def endpoint_resource_name(endpoint: str, project: str, region: str) -> str:
    """An endpoint ID or resource name -> its resource name; another region is refused (an
    endpoint serves only models of its own region)."""
    endpoint = endpoint.strip()
    if m := ENDPOINT_NAME.match(endpoint):
        if m["region"] != region:
            raise InputError(
                f"endpoint {endpoint} is in {m['region']}, but the model is in {region}; use an "
                f"endpoint in {region}, or none (one is created)"
            )
        return endpoint
    if not BARE_ID.match(endpoint):
        raise InputError(
            f"{endpoint!r} is not an endpoint; give its ID or projects/P/locations/R/endpoints/ID"
        )
    return f"projects/{project}/locations/{region}/endpoints/{endpoint}"


def create_endpoint_request(target: DeployTarget) -> Any:
    from google.cloud import aiplatform_v1 as v1

    return v1.CreateEndpointRequest(
        parent=target.parent,
        endpoint=v1.Endpoint(display_name=target.endpoint_display_name,
                             labels={k: label_value(v) for k, v in target.labels.items()}),
    )


def deploy_model_request(target: DeployTarget, endpoint_name: str) -> Any:
    """DeployModel on the target's machine; the new version ("0") takes 100% of the traffic
    once it is healthy (every other deployed model gets 0)."""
    from google.cloud import aiplatform_v1 as v1

    version = target.model_version
    display = "dolly-lora-" + label_value(version.rsplit("/", 1)[-1].replace("@", "-v"))
    return v1.DeployModelRequest(
        endpoint=endpoint_name,
        deployed_model=v1.DeployedModel(
            model=version,
            display_name=display,
            service_account=target.service_account,
            dedicated_resources=v1.DedicatedResources(
                machine_spec=v1.MachineSpec(
                    machine_type=target.machine_type,
                    accelerator_type=target.accelerator_type,
                    accelerator_count=target.accelerator_count,
                ),
                min_replica_count=target.min_replicas,
                max_replica_count=target.max_replicas,
            ),
        ),
        traffic_split={"0": 100},
    )


def as_json(message: Any) -> dict[str, Any]:
    """A proto-plus request as the JSON the REST API takes (camelCase)."""
    import json

    return json.loads(type(message).to_json(
        message, always_print_fields_with_no_presence=False, use_integers_for_enums=False))


ENDPOINT_PLACEHOLDER = "<the endpoint CreateEndpoint returns>"


def planned_requests(target: DeployTarget, reuse: Any = None) -> list[dict[str, Any]]:
    """The requests `deploy` sends, in order, as JSON (for --dry-run). `reuse`: the endpoint
    `find_endpoint` found (or the given one, read)."""
    plans = []
    endpoint = target.endpoint_name or (reuse.name if reuse is not None else "")
    if not endpoint:
        plans.append({"method": "google.cloud.aiplatform.v1.EndpointService.CreateEndpoint",
                      "request": as_json(create_endpoint_request(target))})
    if target.ttl_hours:
        from components.deploy import ttl

        request = ttl.ttl_schedule_request(**_ttl_arguments(
            target, endpoint or ENDPOINT_PLACEHOLDER, not endpoint))
        plans.append({"method": "google.cloud.aiplatform.v1.ScheduleService.CreateSchedule",
                      "request": as_json(request)})
    plans.append({"method": "google.cloud.aiplatform.v1.EndpointService.DeployModel",
                  "request": as_json(deploy_model_request(target, endpoint or ENDPOINT_PLACEHOLDER))})
    previous = [d.id for d in reuse.deployed_models] if reuse is not None else \
        (["<each model deployed there before>"] if endpoint else [])
    plans += [{"method": "google.cloud.aiplatform.v1.EndpointService.UndeployModel",
               "request": {"endpoint": endpoint, "deployedModelId": i}} for i in previous]
    return plans


def check_ttl(target: DeployTarget) -> None:
    """A TTL needs a gs:// root and an image for its undeploy run: InputError otherwise."""
    if target.ttl_hours:
        _ttl_arguments(target, ENDPOINT_PLACEHOLDER, False)


def _ttl_arguments(target: DeployTarget, endpoint: str, created: bool) -> dict[str, Any]:
    from components.deploy import ttl

    if not target.pipeline_root.startswith("gs://") or not target.image:
        raise InputError(
            f"a deployment with a time to live ({target.ttl_hours:g} h) needs a gs:// pipeline "
            "root and the project's image for its undeploy run (--pipeline-root, --image); "
            "or no TTL (0), and `submit undeploy` by hand"
        )
    return {"project": target.project, "region": target.region, "endpoint": endpoint,
            "model_version": target.model_version, "delete_endpoint": created,
            "until": ttl.ttl_until(target.ttl_hours), "image": target.image,
            "pipeline_root": target.pipeline_root.rstrip("/") + "/ttl-undeploy",
            "service_account": target.service_account}


@dataclass
class Clients:
    model: Any
    endpoint: Any
    schedule: Any = None

    @classmethod
    def for_region(cls, region: str, credentials: Any = None) -> Clients:
        from google.cloud import aiplatform_v1 as v1

        options = {"api_endpoint": f"{region}-aiplatform.googleapis.com"}
        return cls(model=v1.ModelServiceClient(client_options=options, credentials=credentials),
                   endpoint=v1.EndpointServiceClient(client_options=options,
                                                     credentials=credentials),
                   schedule=v1.ScheduleServiceClient(client_options=options,
                                                     credentials=credentials))


def _not_found() -> tuple[type[BaseException], ...]:
    from google.api_core import exceptions

    return (exceptions.NotFound,)


def check_model(target: DeployTarget, clients: Clients) -> Any:
    """The model version, or one InputError: it does not exist, or it cannot serve."""
    name = target.model_version
    try:
        model = clients.model.get_model(name=name)
    except _not_found():
        raise InputError(
            f"model version {name} does not exist; list the versions with `gcloud ai models "
            f"list-version MODEL_ID --region {target.region}`"
        ) from None
    if not model.container_spec.image_uri:
        raise InputError(f"model version {name} has no serving container; register it with "
                         "the pipeline's register step (it sets the vLLM container)")
    return model


def check_endpoint(name: str, region: str, clients: Clients) -> Any:
    try:
        return clients.endpoint.get_endpoint(name=name)
    except _not_found():
        raise InputError(
            f"endpoint {name} does not exist; list them with `gcloud ai endpoints list "
            f"--region {region}`, or leave --endpoint out to create one"
        ) from None


class DeployFailed(RuntimeError):
    """Vertex refused or failed the deployment (quota, the container never became healthy)."""


def list_endpoints(project: str, region: str, clients: Clients) -> list[Any]:
    """This project's endpoints in the region (label source=dolly-lora), oldest first."""
    found = clients.endpoint.list_endpoints(
        request={"parent": f"projects/{project}/locations/{region}",
                 "filter": f'labels.{LABEL[0]}="{LABEL[1]}"'})
    return sorted(found, key=lambda e: (e.create_time.timestamp() if e.create_time else 0,
                                        e.name))


def find_endpoint(target: DeployTarget, clients: Clients) -> Any:
    """The endpoint to reuse when none is given: this project's endpoint (its label) with the
    target's display name, else any of this project's, else one of that display name; None."""
    ours = list_endpoints(target.project, target.region, clients)
    named = [e for e in ours if e.display_name == target.endpoint_display_name]
    if named or ours:
        return (named or ours)[0]
    by_name = clients.endpoint.list_endpoints(request={
        "parent": target.parent, "filter": f'display_name="{target.endpoint_display_name}"'})
    return next(iter(sorted(by_name, key=lambda e: e.name)), None)


def deploy_wait_s(model: Any) -> float:
    """Longer than the version's own deployment timeout: Vertex gives up first, and says why."""
    own = model.container_spec.deployment_timeout
    seconds = own.total_seconds() if own else DEPLOYMENT_TIMEOUT_S
    return seconds + DEPLOY_MARGIN_S


def deploy(target: DeployTarget, clients: Clients | None = None,
           echo: Any = print, timeout: float | None = None) -> dict[str, Any]:
    """Deploy `target.model` (see the module docstring). Returns a record of what was done."""
    check_ttl(target)  # refused before anything is made
    clients = clients or Clients.for_region(target.region)
    model = check_model(target, clients)
    created = False
    if target.endpoint:
        endpoint = check_endpoint(target.endpoint_name, target.region, clients)
    elif (endpoint := find_endpoint(target, clients)) is not None:
        echo(f"reusing this project's endpoint {endpoint.name} ({endpoint.display_name})")
    else:
        echo(f"creating endpoint {target.endpoint_display_name} in {target.region}")
        endpoint = clients.endpoint.create_endpoint(
            request=create_endpoint_request(target)).result(timeout=600)
        created = True
    previous = [d.id for d in endpoint.deployed_models]
    ttl_record = _create_ttl(target, clients, endpoint.name, created, echo) \
        if target.ttl_hours else {}
    echo(f"deploying {target.model_version} ({model.container_spec.image_uri}) to "
         f"{endpoint.name} on {target.machine_type} + {target.accelerator_count} x "
         f"{target.accelerator_type}; this takes 10-30 minutes")
    operation = None
    try:
        operation = clients.endpoint.deploy_model(
            request=deploy_model_request(target, endpoint.name))
        response = operation.result(timeout=timeout or deploy_wait_s(model))
    except Exception as exc:  # noqa: BLE001 - any failure: clean up, then one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        cleaned = _clean_up(target, clients, endpoint.name, previous, created, operation)
        raise DeployFailed(f"deploying {target.model_version} failed ({reason}); {cleaned}") \
            from None
    new_id = response.deployed_model.id
    for old in previous:
        echo(f"undeploying the previous deployed model {old}")
        clients.endpoint.undeploy_model(endpoint=endpoint.name, deployed_model_id=old) \
            .result(timeout=1800)
    return {"endpoint": endpoint.name, "deployed_model_id": new_id,
            "model_version": target.model_version, "created_endpoint": created,
            "undeployed": previous, "machine_type": target.machine_type,
            "accelerator": f"{target.accelerator_count}x{target.accelerator_type}",
            "serving_image": model.container_spec.image_uri, **ttl_record}


def _create_ttl(target: DeployTarget, clients: Clients, endpoint: str, created: bool,
                echo: Any) -> dict[str, Any]:
    """The TTL schedule, and the endpoint labelled with it (`submit endpoints` shows it)."""
    from google.protobuf import field_mask_pb2

    from components.deploy import ttl

    args = _ttl_arguments(target, endpoint, created)
    request = ttl.ttl_schedule_request(**args)
    schedule = clients.schedule.create_schedule(parent=request.parent,
                                                schedule=request.schedule)
    until = ttl.until_label(args["until"])
    echo(f"time to live: {target.model_version} is undeployed at {args['until']:%Y-%m-%d %H:%M} "
         f"UTC by the Vertex schedule {schedule.name}")
    current = clients.endpoint.get_endpoint(name=endpoint)
    labels = {**current.labels, "ttl-until": until,
              "ttl-schedule": schedule.name.rsplit("/", 1)[-1]}
    from google.cloud import aiplatform_v1 as v1

    clients.endpoint.update_endpoint(endpoint=v1.Endpoint(name=endpoint, labels=labels),
                                     update_mask=field_mask_pb2.FieldMask(paths=["labels"]))
    return {"ttl_until": args["until"].isoformat(), "ttl_schedule": schedule.name}


def _clean_up(target: DeployTarget, clients: Clients, endpoint: str, previous: list[str],
              created: bool, operation: Any) -> str:
    """After a failed or timed-out deploy: stop it, undeploy whatever of it appeared, delete the
    endpoint only if this run created it. Returns what was done, in words."""
    import contextlib

    if operation is not None and hasattr(operation, "cancel"):
        with contextlib.suppress(Exception):  # best effort; the undeploy below still runs
            operation.cancel()
    done = []
    try:
        current = clients.endpoint.get_endpoint(name=endpoint)
        for d in current.deployed_models:
            if d.id not in previous and _same_version(d, target.model_version):
                clients.endpoint.undeploy_model(endpoint=endpoint, deployed_model_id=d.id) \
                    .result(timeout=1800)
                done.append(f"undeployed {d.id}")
        if created:
            clients.endpoint.delete_endpoint(name=endpoint).result(timeout=600)
            done.append(f"the endpoint {endpoint} created for it was deleted again")
        else:
            done.append(f"{endpoint} still serves what it served before")
    except Exception as exc:  # noqa: BLE001 - say what is left and how to remove it
        done.append(f"cleaning up failed ({exc}); run `submit undeploy --endpoint "
                    f"{endpoint.rsplit('/', 1)[-1]}"
                    f"{' --delete-endpoint' if created else ''}`"
                    + (", or the TTL schedule will" if target.ttl_hours else ""))
    return "; ".join(done)


def undeploy(project: str, region: str, endpoint: str, model: str = "",
             delete_endpoint: bool = False, clients: Clients | None = None,
             dry_run: bool = False, echo: Any = print) -> list[dict[str, Any]]:
    """Undeploy from `endpoint` the deployed models of `model` (a version; '' = all of them),
    and delete the endpoint when asked and nothing is left on it. Returns the requests."""
    name = endpoint_resource_name(endpoint, project, region)
    version = model_version_name(model, project, region) if model else ""
    clients = clients or Clients.for_region(region)
    current = check_endpoint(name, region, clients)
    doomed = [d for d in current.deployed_models
              if not version or _same_version(d, version)]
    if version and not doomed:
        raise InputError(f"{version} is not deployed on {name}; deployed there: "
                         + (", ".join(f"{d.model}@{d.model_version_id}"
                                      for d in current.deployed_models) or "nothing"))
    requests: list[dict[str, Any]] = [
        {"method": "google.cloud.aiplatform.v1.EndpointService.UndeployModel",
         "request": {"endpoint": name, "deployedModelId": d.id}} for d in doomed]
    left = len(current.deployed_models) - len(doomed)
    if delete_endpoint:
        if left:
            raise InputError(f"{name} would still serve {left} other model(s); undeploy them "
                             "too (leave MODEL out) before --delete-endpoint")
        requests.append({"method": "google.cloud.aiplatform.v1.EndpointService.DeleteEndpoint",
                         "request": {"name": name}})
    if dry_run:
        return requests
    for d in doomed:
        echo(f"undeploying {d.id} ({d.model}@{d.model_version_id}) from {name}")
        clients.endpoint.undeploy_model(endpoint=name, deployed_model_id=d.id).result(timeout=1800)
    if delete_endpoint:
        echo(f"deleting {name}")
        clients.endpoint.delete_endpoint(name=name).result(timeout=600)
    return requests


def _same_version(deployed: Any, version: str) -> bool:
    model, _, ver = version.partition("@")
    return deployed.model.split("@")[0] == model and (
        ver == "default" or deployed.model_version_id == ver)


def run_deploy(
    *, registered: dict[str, Any], project: str, location: str, endpoint: str,
    machine_type: str, accelerator_type: str, accelerator_count: int, min_replicas: int,
    max_replicas: int, record_path: str, ttl_hours: float = 0.0, image: str = "",
) -> dict[str, Any]:
    """Entry point of the KFP component: deploy what the register step registered. Without a
    project (the local runner) it records the requests it would send instead. The TTL run
    writes under the step's own output folder (in the pipeline root)."""
    import json
    from pathlib import Path

    from components.common.paths import storage_uri

    version = registered.get("version_name") or "local-model@1"
    root = storage_uri(str(Path(record_path).parent))
    target = DeployTarget(
        project=project or "local-project", region=location or "local-region", model=version,
        endpoint=endpoint, machine_type=machine_type, accelerator_type=accelerator_type,
        accelerator_count=accelerator_count, min_replicas=min_replicas,
        max_replicas=max_replicas, ttl_hours=ttl_hours, image=image,
        service_account=_own_service_account() if project else "",
        pipeline_root=root if root.startswith("gs://") else
        ("" if project else "gs://<the pipeline root>"),
    )
    if project:
        record = deploy(target)
    else:
        record = {"deployed": False, "reason": "no Vertex project (local run)",
                  "requests": planned_requests(target)}
    Path(record_path).parent.mkdir(parents=True, exist_ok=True)
    Path(record_path).write_text(json.dumps(record, indent=2))
    return record


def _own_service_account() -> str:
    """The identity this step runs as (the pipeline's service account on Vertex), so the TTL
    run has the same rights; '' (Vertex's default) when it cannot be told."""
    try:
        import google.auth
        from google.auth.transport.requests import Request

        credentials, _ = google.auth.default()
        email = getattr(credentials, "service_account_email", "") or ""
        if email == "default":  # the metadata server's alias: refresh to learn the address
            credentials.refresh(Request())
            email = getattr(credentials, "service_account_email", "") or ""
        return "" if email == "default" else email
    except Exception:  # noqa: BLE001 - best effort: the schedule then runs as the default
        return ""


def run_deploy_step(
    cfg: DeployConfig, *, registered_model: str, deployment: str, machine_type: str,
    accelerator_type: str, accelerator_count: int, image: str, project: str = "",
    location: str = "", registered_model_metadata: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The deploy step: the version the register step registered (its artifact's metadata) to
    `cfg.deploy_endpoint` (or a new endpoint) on the serving machine; `deployment` gets the
    record."""
    record = run_deploy(
        registered=registered_model_metadata or {}, project=project, location=location,
        endpoint=cfg.deploy_endpoint, machine_type=machine_type,
        accelerator_type=accelerator_type, accelerator_count=accelerator_count,
        min_replicas=cfg.deploy_min_replicas, max_replicas=cfg.deploy_max_replicas,
        record_path=deployment, ttl_hours=cfg.deploy_ttl_hours, image=image,
    )
    return {"deployment": {k: v for k, v in record.items() if isinstance(v, str | bool)}}
