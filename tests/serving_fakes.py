"""Offline Vertex AI model registry, endpoints and prediction: the real aiplatform clients
(`aiplatform.Model.upload`, the `aiplatform_v1` GAPIC clients) with their calls captured.

Each faked method records its request (a real `aiplatform_v1` message) and answers like the
service: models and endpoints live in dicts, long-running operations are objects whose
`result()` returns (or raises `fail_deploy`). `calls` keeps the order of every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

VLLM_ANSWER = "LoRA adds small low-rank matrices to a frozen model."


@dataclass
class Operation:
    value: Any = None
    error: Exception | None = None
    operation: Any = field(default_factory=lambda: type("Op", (), {"name": "operations/1"})())

    def result(self, timeout: float | None = None) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


@dataclass
class Registry:
    models: dict[str, Any] = field(default_factory=dict)  # "projects/.../models/ID@V" -> Model
    endpoints: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail_deploy: Exception | None = None
    fail_after_deploy: Exception | None = None  # the model appears, then the wait fails
    next_id: int = 100
    schedules: list[Any] = field(default_factory=list)  # CreateScheduleRequest as sent

    def requests(self, method: str) -> list[Any]:
        return [r for m, r in self.calls if m == method]

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]

    def add_model(self, name: str, image: str = "us-docker.pkg.dev/vertex-ai/x/vllm:1") -> str:
        from google.cloud import aiplatform_v1 as v1

        base, _, version = name.partition("@")
        self.models[name] = v1.Model(name=base, version_id=version or "1",
                                     container_spec=v1.ModelContainerSpec(image_uri=image))
        return name

    def add_endpoint(self, name: str, deployed: list[tuple[str, str]] = (),
                     display_name: str = "", labels: dict[str, str] | None = None,
                     created: str = "2026-12-01T00:00:00Z") -> str:
        from google.cloud import aiplatform_v1 as v1

        self.endpoints[name] = v1.Endpoint(
            name=name, display_name=display_name, labels=labels or {}, create_time=created,
            deployed_models=[v1.DeployedModel(
                id=i, model=m.split("@")[0], model_version_id=m.split("@")[1],
                dedicated_resources=v1.DedicatedResources(
                    machine_spec=v1.MachineSpec(machine_type="g2-standard-8",
                                                accelerator_type="NVIDIA_L4",
                                                accelerator_count=1),
                    min_replica_count=1, max_replica_count=2))
                for i, m in deployed])
        return name


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    import google.auth
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1 as v1
    from google.cloud.aiplatform import initializer
    from google.protobuf import json_format, struct_pb2

    reg = Registry()
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), None))

    def record(method: str, request: Any) -> None:
        reg.calls.append((method, request))

    def upload_model(self: Any, request: Any = None, **kw: Any) -> Operation:
        req = v1.UploadModelRequest(request)
        record("UploadModel", req)
        base = req.parent_model or f"{req.parent}/models/{reg.next_id}"
        version = str(sum(1 for n in reg.models if n.startswith(base + "@")) + 1)
        reg.models[f"{base}@{version}"] = v1.Model(req.model, name=base, version_id=version)
        return Operation(v1.UploadModelResponse(model=base, model_version_id=version))

    def get_model(self: Any, request: Any = None, *, name: str = "", **kw: Any) -> Any:
        name = name or request.name
        record("GetModel", name)
        key = name if "@" in name else f"{name}@1"
        key = key.replace("@default", "@1")
        if key not in reg.models:
            raise exceptions.NotFound(f"Model {name} not found")
        return reg.models[key]

    def list_models(self: Any, request: Any = None, **kw: Any) -> list[Any]:
        record("ListModels", request)
        seen = {}
        for model in reg.models.values():  # each model as its default (newest) version
            seen[model.name] = model
        return list(seen.values())

    def create_endpoint(self: Any, request: Any = None, **kw: Any) -> Operation:
        req = v1.CreateEndpointRequest(request)
        record("CreateEndpoint", req)
        name = f"{req.parent}/endpoints/{reg.next_id}"
        reg.next_id += 1
        reg.endpoints[name] = v1.Endpoint(req.endpoint, name=name)
        return Operation(reg.endpoints[name])

    def get_endpoint(self: Any, request: Any = None, *, name: str = "", **kw: Any) -> Any:
        name = name or request.name
        record("GetEndpoint", name)
        if name not in reg.endpoints:
            raise exceptions.NotFound(f"Endpoint {name} not found")
        return reg.endpoints[name]

    def list_endpoints(self: Any, request: Any = None, **kw: Any) -> list[Any]:
        import re

        req = v1.ListEndpointsRequest(request)
        record("ListEndpoints", req)
        found = [e for n, e in reg.endpoints.items() if n.startswith(req.parent + "/")]
        if m := re.fullmatch(r'labels\.([\w-]+)="([^"]*)"', req.filter):
            found = [e for e in found if e.labels.get(m[1]) == m[2]]
        elif m := re.fullmatch(r'display_name="([^"]*)"', req.filter):
            found = [e for e in found if e.display_name == m[1]]
        elif req.filter:
            raise exceptions.InvalidArgument(f"filter {req.filter!r} not understood")
        return found

    def update_endpoint(self: Any, request: Any = None, **kw: Any) -> Any:
        req = v1.UpdateEndpointRequest(request or kw)
        record("UpdateEndpoint", req)
        ep = reg.endpoints[req.endpoint.name]
        assert list(req.update_mask.paths) == ["labels"], req.update_mask
        ep.labels.clear()
        ep.labels.update(req.endpoint.labels)
        return ep

    def create_schedule(self: Any, request: Any = None, **kw: Any) -> Any:
        req = v1.CreateScheduleRequest(request or kw)
        record("CreateSchedule", req)
        reg.schedules.append(req)
        return v1.Schedule(req.schedule, name=f"{req.parent}/schedules/{reg.next_id}")

    def deploy_model(self: Any, request: Any = None, **kw: Any) -> Operation:
        req = v1.DeployModelRequest(request)
        record("DeployModel", req)
        if reg.fail_deploy is not None:
            return Operation(error=reg.fail_deploy)
        model, _, version = req.deployed_model.model.partition("@")
        deployed = v1.DeployedModel(req.deployed_model, id=str(reg.next_id), model=model,
                                    model_version_id=version)
        reg.next_id += 1
        reg.endpoints[req.endpoint].deployed_models.append(deployed)
        if reg.fail_after_deploy is not None:
            return Operation(error=reg.fail_after_deploy)
        return Operation(v1.DeployModelResponse(deployed_model=deployed))

    def undeploy_model(self: Any, request: Any = None, *, endpoint: str = "",
                       deployed_model_id: str = "", **kw: Any) -> Operation:
        req = v1.UndeployModelRequest(request or {"endpoint": endpoint,
                                                  "deployed_model_id": deployed_model_id})
        record("UndeployModel", req)
        ep = reg.endpoints[req.endpoint]
        kept = [d for d in ep.deployed_models if d.id != req.deployed_model_id]
        del ep.deployed_models[:]
        ep.deployed_models.extend(kept)
        return Operation(None)

    def delete_endpoint(self: Any, request: Any = None, *, name: str = "", **kw: Any) -> Operation:
        name = name or request.name
        record("DeleteEndpoint", name)
        reg.endpoints.pop(name, None)
        return Operation(None)

    def predict(self: Any, request: Any = None, *, endpoint: str = "",
                instances: Any = (), **kw: Any) -> Any:
        if request is None:
            req = v1.PredictRequest(endpoint=endpoint)
            req._pb.instances.extend(instances)
        else:
            req = v1.PredictRequest(request)
        record("Predict", req)
        if req.endpoint not in reg.endpoints:
            raise exceptions.NotFound(f"Endpoint {req.endpoint} not found")
        # What Model Garden's vLLM container answers to a chatCompletions instance.
        completion = {"choices": [{"index": 0, "message": {"role": "assistant",
                                                           "content": f" {VLLM_ANSWER}\n"}}]}
        response = v1.PredictResponse()
        response._pb.predictions.append(json_format.ParseDict(completion, struct_pb2.Value()))
        return response

    for cls, methods in (
        (v1.ModelServiceClient, (upload_model, get_model, list_models)),
        (v1.EndpointServiceClient, (create_endpoint, get_endpoint, deploy_model, undeploy_model,
                                    delete_endpoint, list_endpoints, update_endpoint)),
        (v1.ScheduleServiceClient, (create_schedule,)),
        (v1.PredictionServiceClient, (predict,)),
    ):
        for fn in methods:
            monkeypatch.setattr(cls, fn.__name__, fn)
    yield reg
    initializer.global_config._project = None
    initializer.global_config._location = None
    initializer.global_config._credentials = None
