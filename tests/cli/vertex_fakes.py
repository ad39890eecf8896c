"""Offline Vertex AI: the real google-cloud-aiplatform client, with its GAPIC calls captured.

Nothing leaves the machine: credentials are anonymous, the pipeline-root bucket check (which
otherwise retries ~110 s offline) is stubbed, and the PipelineService / ScheduleService /
ModelService methods record the request they were given and answer like the service would.
"""

from __future__ import annotations

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
