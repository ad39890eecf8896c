"""`submit --resume JOB` on Vertex and fine-tune's task-level retry: the captured
CreatePipelineJob request (real aiplatform client, parsed by its protos) and the compiled YAML."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.submit import app
from tests.cli.vertex_fakes import Captured

BASE = ["--project", "my-proj", "--region", "us-central1",
        "--pipeline-root", "gs://my-bucket/pipelines", "--public-model"]
OLD = "projects/my-proj/locations/us-central1/pipelineJobs/dolly-lora-20261201-100000"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DOLLY_LORA_", "GOOGLE_CLOUD_")) or name == "KFP_HOST":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def old_job(vertex: Captured, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The preempted job as GetPipelineJob returns it: its parameters, FAILED."""
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
    from google.cloud.aiplatform_v1.types import PipelineJob

    params: dict[str, Any] = {"run_name": "", "checkpoint_uri": "gs://ckpt/runs"}
    reads: list[str] = []

    def get_pipeline_job(self: Any, request: Any = None, **kw: Any) -> PipelineJob:
        name = kw.get("name") or request.name
        reads.append(name)
        job = PipelineJob(name=name, state="PIPELINE_STATE_FAILED")
        for k, v in params.items():
            job.runtime_config.parameter_values[k] = v
        return job

    monkeypatch.setattr(PipelineServiceClient, "get_pipeline_job", get_pipeline_job)
    return {"params": params, "reads": reads}


def sent_values(vertex: Captured) -> tuple[str, dict[str, Any]]:
    [sent] = vertex.pipeline_jobs
    return sent["pipeline_job_id"], dict(sent["pipeline_job"].runtime_config.parameter_values)


def test_resume_continues_the_old_jobs_checkpoints_under_a_new_job(
        vertex: Captured, template: Path, old_job: dict[str, Any]) -> None:
    r = invoke(*BASE, "--template", str(template), "--resume", "dolly-lora-20261201-100000")
    assert r.exit_code == 0, r.output
    job_id, values = sent_values(vertex)
    assert old_job["reads"] == [OLD]
    assert job_id != "dolly-lora-20261201-100000", "a job id is used once"
    # fine-tune's checkpoints: <checkpoint_uri>/<run_name>/fine-tune/ -> the old job's folder
    assert values["run_name"] == "dolly-lora-20261201-100000"
    assert values["checkpoint_uri"] == "gs://ckpt/runs"
    assert "resuming " + OLD + " (PIPELINE_STATE_FAILED)" in r.stderr


def test_resume_keeps_a_run_name_the_old_job_was_given(
        vertex: Captured, template: Path, old_job: dict[str, Any]) -> None:
    old_job["params"]["run_name"] = "weekly-dolly"
    r = invoke(*BASE, "--template", str(template), "--checkpoint-uri", "gs://other/ck",
               "--resume", OLD)
    assert r.exit_code == 0, r.output
    _, values = sent_values(vertex)
    assert values["run_name"] == "weekly-dolly" and values["checkpoint_uri"] == "gs://other/ck"


def test_resume_dry_run_reads_nothing_and_shows_the_run_name(vertex: Captured,
                                                             template: Path) -> None:
    r = invoke(*BASE, "--template", str(template), "--checkpoint-uri", "gs://ckpt/runs",
               "--resume", "dolly-lora-20261201-100000", "--dry-run")
    assert r.exit_code == 0, r.output
    values = json.loads(r.stdout)["request"]["pipelineJob"]["runtimeConfig"]["parameterValues"]
    assert values["run_name"] == "dolly-lora-20261201-100000"
    assert not vertex.pipeline_jobs


@pytest.mark.parametrize(("args", "message"), [
    (["--resume", "dolly-lora-20261201-100000", "--dry-run"], "nothing to continue from"),
    (["--resume", "dolly-lora-x", "--run-id", "dolly-lora-x", "--checkpoint-uri", "gs://c/k"],
     "is the job being resumed"),
    (["--resume", "projects/my-proj/locations/europe-west4/pipelineJobs/j1"], "ran in europe-west4"),
    (["--resume", "Not A Job"], "is not a pipeline job"),
])
def test_a_resume_that_cannot_work_is_refused_before_anything_is_sent(
        vertex: Captured, template: Path, args: list[str], message: str) -> None:
    r = invoke(*BASE, "--template", str(template), *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and not vertex.pipeline_jobs


def test_fine_tune_is_retried_on_vertex_and_nowhere_else(template: Path) -> None:
    import yaml

    from pipelines.lora_pipeline import FINE_TUNE_RETRIES, lora_pipeline

    tasks = yaml.safe_load(template.read_text())["root"]["dag"]["tasks"]
    assert tasks["fine-tune"]["retryPolicy"]["maxRetryCount"] == FINE_TUNE_RETRIES == 2
    assert tasks["fine-tune"]["retryPolicy"]["backoffDuration"] == "60s"
    others = [n for n, t in tasks.items() if "retryPolicy" in t and n != "fine-tune"]
    assert others == [], "evaluate/inference fail the same way twice: no retry"
    local = lora_pipeline.pipeline_spec.root.dag.tasks["fine-tune"]
    assert not local.retry_policy.max_retry_count, "locally a retry only repeats an error"
