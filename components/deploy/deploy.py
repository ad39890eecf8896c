"""Deploy a registered model version to a Vertex AI endpoint, replacing what it served only once the
new version is up; undeploy it again.

Why hand-built GAPIC requests rather than `aiplatform.Model.deploy`: `submit deploy --dry-run`
prints exactly what is sent, and the tests capture exactly that. The order makes a bad deploy
cost nothing and break nothing: check everything first, deploy with all traffic to the new
version only once Vertex has it answering, then undeploy the old ones. An endpoint this call
created and left empty is deleted again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from components.common.config import DeployConfig
from components.common.errors import InputError
from components.common.serving import label_value

# What the CLI may call: the step's public entry points (tests/unit/test_layout.py).
__all__ = ["DeployFailed", "DeployTarget", "deploy", "endpoint_resource_name",
           "planned_requests", "run_deploy", "undeploy"]

MODEL_NAME = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/models/(?P<id>[^/@]+)"
    r"(@(?P<version>[^/@]+))?$"
)
ENDPOINT_NAME = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/endpoints/(?P<id>[^/]+)$"
)
BARE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
DEPLOY_TIMEOUT_S = 3600  # Model Garden's notebooks wait up to 30 min for a vLLM deploy


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
    labels: dict[str, str] = field(default_factory=lambda: {"source": "dolly-lora"})

    def __post_init__(self) -> None:
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


def planned_requests(target: DeployTarget) -> list[dict[str, Any]]:
    """The requests `deploy` sends, in order, as JSON (for --dry-run)."""
    plans = []
    endpoint = target.endpoint_name
    if not endpoint:
        plans.append({"method": "google.cloud.aiplatform.v1.EndpointService.CreateEndpoint",
                      "request": as_json(create_endpoint_request(target))})
    plans.append({"method": "google.cloud.aiplatform.v1.EndpointService.DeployModel",
                  "request": as_json(deploy_model_request(target, endpoint or ENDPOINT_PLACEHOLDER))})
    if endpoint:
        plans.append({"method": "google.cloud.aiplatform.v1.EndpointService.UndeployModel",
                      "request": {"endpoint": endpoint,
                                  "deployedModelId": "<each model deployed there before>"}})
    return plans


@dataclass
class Clients:
    model: Any
    endpoint: Any

    @classmethod
    def for_region(cls, region: str, credentials: Any = None) -> Clients:
        from google.cloud import aiplatform_v1 as v1

        options = {"api_endpoint": f"{region}-aiplatform.googleapis.com"}
        return cls(model=v1.ModelServiceClient(client_options=options, credentials=credentials),
                   endpoint=v1.EndpointServiceClient(client_options=options,
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


def deploy(target: DeployTarget, clients: Clients | None = None,
           echo: Any = print, timeout: float = DEPLOY_TIMEOUT_S) -> dict[str, Any]:
    """Deploy `target.model` (see the module docstring). Returns a record of what was done."""
    clients = clients or Clients.for_region(target.region)
    model = check_model(target, clients)
    created = False
    if target.endpoint:
        endpoint = check_endpoint(target.endpoint_name, target.region, clients)
    else:
        echo(f"creating endpoint {target.endpoint_display_name} in {target.region}")
        endpoint = clients.endpoint.create_endpoint(
            request=create_endpoint_request(target)).result(timeout=600)
        created = True
    previous = [d.id for d in endpoint.deployed_models]
    echo(f"deploying {target.model_version} ({model.container_spec.image_uri}) to "
         f"{endpoint.name} on {target.machine_type} + {target.accelerator_count} x "
         f"{target.accelerator_type}; this takes 10-30 minutes")
    try:
        response = clients.endpoint.deploy_model(
            request=deploy_model_request(target, endpoint.name)).result(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure: clean up, then one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if created:
            clients.endpoint.delete_endpoint(name=endpoint.name).result(timeout=600)
            raise DeployFailed(f"deploying {target.model_version} failed ({reason}); the "
                               f"endpoint {endpoint.name} created for it was deleted again") \
                from None
        raise DeployFailed(f"deploying {target.model_version} failed ({reason}); {endpoint.name} "
                           "still serves what it served before") from None
    new_id = response.deployed_model.id
    for old in previous:
        echo(f"undeploying the previous deployed model {old}")
        clients.endpoint.undeploy_model(endpoint=endpoint.name, deployed_model_id=old) \
            .result(timeout=1800)
    return {"endpoint": endpoint.name, "deployed_model_id": new_id,
            "model_version": target.model_version, "created_endpoint": created,
            "undeployed": previous, "machine_type": target.machine_type,
            "accelerator": f"{target.accelerator_count}x{target.accelerator_type}",
            "serving_image": model.container_spec.image_uri}


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
    max_replicas: int, record_path: str,
) -> dict[str, Any]:
    """Entry point of the KFP component: deploy what the register step registered. Without a
    project (the local runner) it records the requests it would send instead."""
    import json
    from pathlib import Path

    version = registered.get("version_name") or "local-model@1"
    target = DeployTarget(
        project=project or "local-project", region=location or "local-region", model=version,
        endpoint=endpoint, machine_type=machine_type, accelerator_type=accelerator_type,
        accelerator_count=accelerator_count, min_replicas=min_replicas,
        max_replicas=max_replicas,
    )
    if project:
        record = deploy(target)
    else:
        record = {"deployed": False, "reason": "no Vertex project (local run)",
                  "requests": planned_requests(target)}
    Path(record_path).parent.mkdir(parents=True, exist_ok=True)
    Path(record_path).write_text(json.dumps(record, indent=2))
    return record


def run_deploy_step(
    cfg: DeployConfig, *, registered_model: str, deployment: str, machine_type: str,
    accelerator_type: str, accelerator_count: int, project: str = "", location: str = "",
    registered_model_metadata: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The deploy step: the version the register step registered (its artifact's metadata) to
    `cfg.deploy_endpoint` (or a new endpoint) on the serving machine; `deployment` gets the
    record."""
    record = run_deploy(
        registered=registered_model_metadata or {}, project=project, location=location,
        endpoint=cfg.deploy_endpoint, machine_type=machine_type,
        accelerator_type=accelerator_type, accelerator_count=accelerator_count,
        min_replicas=cfg.deploy_min_replicas, max_replicas=cfg.deploy_max_replicas,
        record_path=deployment,
    )
    return {"deployment": {k: v for k, v in record.items() if isinstance(v, str | bool)}}
