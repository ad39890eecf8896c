"""Offline Vertex AI: the real google-cloud-aiplatform client, with its GAPIC calls captured.

Nothing leaves the machine: credentials are anonymous, the pipeline-root bucket check (which
otherwise retries ~110 s offline) is stubbed, and the PipelineService / ScheduleService /
ModelService methods record the request they were given and answer like the service would.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

SECRET_VALUES = ("hf_SENTINEL_TOKEN_do_not_leak", "wandb_SENTINEL_KEY_do_not_leak")
IMAGE = "us-central1-docker.pkg.dev/my-proj/dolly-lora/trainer@sha256:" + "ab" * 32


@dataclass
class Captured:
    pipeline_jobs: list[Any] = field(default_factory=list)
    schedules: list[Any] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    job_states: list[str] = field(default_factory=list)
    failed_task: str = "fine-tune"
    model_lists: list[Any] = field(default_factory=list)  # ListModelsRequest as sent
    model_uploads: list[Any] = field(default_factory=list)  # UploadModelRequest as sent
    existing_models: list[str] = field(default_factory=list)  # resource names list_models finds


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compiled Vertex template with a real-looking image (compiled once per session)."""
    from pipelines.compiler import compile_pipeline
    from pipelines.settings import CompileSettings

    out = tmp_path_factory.mktemp("tpl") / "dolly-lora.yaml"
    return compile_pipeline(out, CompileSettings(image=IMAGE))


@pytest.fixture
def vertex(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    """Patch the real aiplatform client so requests are captured, never sent."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer, pipeline_jobs
    from google.cloud.aiplatform_v1.services.model_service import ModelServiceClient
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
    from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient
    from google.cloud.aiplatform_v1.types import (
        Context,
        ListModelsRequest,
        Model,
        PipelineJob,
        PipelineTaskDetail,
        Schedule,
        UploadModelResponse,
    )

    for name, value in zip(("HF_TOKEN", "WANDB_API_KEY"), SECRET_VALUES, strict=True):
        monkeypatch.setenv(name, value)  # present in the environment: must never be sent
    cap = Captured()
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), None))
    monkeypatch.setattr(
        pipeline_jobs.gcs_utils,
        "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
        lambda **kwargs: cap.calls.append(("bucket_check", kwargs["output_artifacts_gcs_dir"])),
    )

    def create_pipeline_job(self: Any, request: Any = None, **kw: Any) -> PipelineJob:
        job = PipelineJob(kw["pipeline_job"])
        cap.pipeline_jobs.append({"parent": kw["parent"], "pipeline_job": PipelineJob(job),
                                  "pipeline_job_id": kw["pipeline_job_id"]})
        job.name = f"{kw['parent']}/pipelineJobs/{kw['pipeline_job_id']}"
        # The run's ML Metadata context, which `submit(experiment=...)` links to the experiment.
        job.job_detail.pipeline_run_context = Context(
            name=f"{kw['parent']}/metadataStores/default/contexts/{kw['pipeline_job_id']}",
            schema_title="system.PipelineRun", display_name=kw["pipeline_job_id"])
        return job

    def get_pipeline_job(self: Any, request: Any = None, **kw: Any) -> PipelineJob:
        # each read takes the next state; the last one stays, as a finished job's does
        state = (cap.job_states.pop(0) if len(cap.job_states) > 1 else
                 cap.job_states[0] if cap.job_states else "PIPELINE_STATE_SUCCEEDED")
        job = PipelineJob(name=kw.get("name") or request.name, state=state)
        if state == "PIPELINE_STATE_FAILED":
            job.job_detail.task_details.append(PipelineTaskDetail(
                task_name=cap.failed_task, state=PipelineTaskDetail.State.FAILED))
            job.job_detail.task_details.append(PipelineTaskDetail(
                task_name="prepare-data", state=PipelineTaskDetail.State.SUCCEEDED))
        return job

    def create_schedule(self: Any, request: Any = None, **kw: Any) -> Schedule:
        cap.schedules.append({"parent": kw["parent"], "schedule": Schedule(kw["schedule"])})
        out = Schedule(kw["schedule"])
        out.name = f"{kw['parent']}/schedules/123"
        return out

    def schedule_call(action: str) -> Any:
        def call(self: Any, request: Any = None, **kw: Any) -> Any:
            name = kw.get("name") or request.name
            cap.calls.append((action, name))
            if action == "delete":  # a long-running operation
                return SimpleNamespace(operation=SimpleNamespace(name=f"{name}/op"),
                                       result=lambda: None)
            return Schedule(name=name, display_name="s", cron="0 3 * * 1")
        return call

    def list_models(self: Any, request: Any = None, **kw: Any) -> list[Any]:
        cap.model_lists.append(ListModelsRequest(request))
        return [Model(name=name, display_name="existing") for name in cap.existing_models]

    def upload_model(self: Any, request: Any = None, **kw: Any) -> Any:
        cap.model_uploads.append(request)
        name = request.parent_model or f"{request.parent}/models/4242"
        version = str(len(cap.existing_models) + 1)
        response = UploadModelResponse(model=name, model_version_id=version)
        return SimpleNamespace(operation=SimpleNamespace(name=f"{name}/operations/1"),
                               result=lambda: response)

    def get_model(self: Any, request: Any = None, **kw: Any) -> Any:
        name, _, version = (kw.get("name") or request.name).partition("@")
        return Model(name=name, version_id=version or "1")

    monkeypatch.setattr(ModelServiceClient, "list_models", list_models)
    monkeypatch.setattr(ModelServiceClient, "upload_model", upload_model)
    monkeypatch.setattr(ModelServiceClient, "get_model", get_model)
    monkeypatch.setattr(PipelineServiceClient, "create_pipeline_job", create_pipeline_job)
    monkeypatch.setattr(PipelineServiceClient, "get_pipeline_job", get_pipeline_job)
    monkeypatch.setattr(ScheduleServiceClient, "create_schedule", create_schedule)
    for action in ("get", "pause", "resume", "delete"):
        monkeypatch.setattr(ScheduleServiceClient, f"{action}_schedule", schedule_call(action))
    # A different global default, to prove that nothing falls back to it (python-aiplatform#4039).
    aiplatform.init(project="default-proj", location="europe-west4",
                    credentials=AnonymousCredentials())
    yield cap
    initializer.global_config._project = None
    initializer.global_config._location = None
    initializer.global_config._credentials = None


@dataclass
class MetadataStore:
    """What the fake Vertex ML Metadata service holds: contexts by resource name, and every
    call made (method, resource name), in order."""

    contexts: dict[str, Any] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def context(self, experiment: str, run: str | None = None) -> Any:
        cid = f"{experiment}-{run}" if run else experiment
        return self.contexts[f"{METADATA_STORE}/contexts/{cid}"]


METADATA_STORE = "projects/my-proj/locations/us-central1/metadataStores/default"


@pytest.fixture
def vertex_metadata(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetadataStore]:
    """The real aiplatform client against an in-memory Vertex ML Metadata service (what Vertex
    AI Experiments are made of): contexts are created, read, updated and linked, never sent."""
    import google.auth
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.metadata import metadata
    from google.cloud.aiplatform_v1.services.metadata_service import MetadataServiceClient
    from google.cloud.aiplatform_v1.types import Context
    from google.cloud.aiplatform_v1.types import MetadataStore as GcaStore

    store = MetadataStore()
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), None))

    def name_of(request: Any, kw: dict[str, Any], key: str = "name") -> str:
        return kw.get(key) or getattr(request, key)

    def get_metadata_store(self: Any, request: Any = None, **kw: Any) -> Any:
        store.calls.append(("get_metadata_store", name_of(request, kw)))
        return GcaStore(name=name_of(request, kw))

    def get_context(self: Any, request: Any = None, **kw: Any) -> Any:
        name = name_of(request, kw)
        store.calls.append(("get_context", name))
        if name not in store.contexts:
            raise exceptions.NotFound(f"{name} not found")
        return Context(store.contexts[name])

    def create_context(self: Any, request: Any = None, **kw: Any) -> Any:
        parent, ctx, cid = kw["parent"], Context(kw["context"]), kw.get("context_id")
        ctx.name = f"{parent}/contexts/{cid}"
        store.calls.append(("create_context", ctx.name))
        if ctx.name in store.contexts:
            raise exceptions.AlreadyExists(ctx.name)
        store.contexts[ctx.name] = Context(ctx)
        return Context(ctx)

    def update_context(self: Any, request: Any = None, **kw: Any) -> Any:
        ctx = Context(kw["context"])
        store.calls.append(("update_context", ctx.name))
        store.contexts[ctx.name] = Context(ctx)
        return Context(ctx)

    def add_context_children(self: Any, request: Any = None, **kw: Any) -> Any:
        store.calls.append(("add_context_children", kw["context"]))
        store.children.setdefault(kw["context"], []).extend(kw.get("child_contexts", []))
        return None

    def list_artifacts(self: Any, request: Any = None, **kw: Any) -> Any:
        store.calls.append(("list_artifacts", kw.get("parent") or request.parent))
        return []

    def get_artifact(self: Any, request: Any = None, **kw: Any) -> Any:
        store.calls.append(("get_artifact", name_of(request, kw)))
        raise exceptions.NotFound(name_of(request, kw))

    def get_execution(self: Any, request: Any = None, **kw: Any) -> Any:
        store.calls.append(("get_execution", name_of(request, kw)))  # legacy experiment runs
        raise exceptions.NotFound(name_of(request, kw))

    def unexpected(method: str) -> Any:
        def call(self: Any, *args: Any, **kw: Any) -> Any:
            raise AssertionError(f"unexpected Vertex ML Metadata call {method} (not faked)")
        return call

    for method, _fn in inspect.getmembers(MetadataServiceClient, inspect.isfunction):
        if not method.startswith("_") and "path" not in method and "transport" not in method:
            monkeypatch.setattr(MetadataServiceClient, method, unexpected(method))
    for method, fn in [("get_metadata_store", get_metadata_store), ("get_context", get_context),
                       ("create_context", create_context), ("update_context", update_context),
                       ("add_context_children", add_context_children),
                       ("list_artifacts", list_artifacts), ("get_artifact", get_artifact),
                       ("get_execution", get_execution)]:
        monkeypatch.setattr(MetadataServiceClient, method, fn)
    for var in ("CLOUD_ML_PROJECT_ID", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.setenv(var, "my-proj")
    monkeypatch.setenv("CLOUD_ML_REGION", "us-central1")  # what Vertex sets in its jobs
    aiplatform.init(project="my-proj", location="us-central1", credentials=AnonymousCredentials())
    metadata._experiment_tracker.reset()
    yield store
    metadata._experiment_tracker.reset()
    initializer.global_config._project = None
    initializer.global_config._location = None
    initializer.global_config._credentials = None
