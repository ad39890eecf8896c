"""`submit schedule ...`: the CreateSchedule request, the client pitfalls, cron checks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.schedules import check_cron, schedule_cron
from cli.submit import app
from components.common.errors import InputError
from tests.cli.vertex_fakes import SECRET_VALUES, Captured

# --public-model: these tests are about the request; test_first_vertex_run covers the token.
BASE = ["--project", "my-proj", "--region", "us-central1",
        "--pipeline-root", "gs://my-bucket/pipelines", "--public-model"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DOLLY_LORA_", "GOOGLE_CLOUD_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_create_sends_cron_labels_and_location(vertex: Captured, template: Path) -> None:
    r = invoke(*BASE, "--template", str(template), "--label", "team=ml", "--param",
               "max_steps=30", "--service-account", "sa@my-proj.iam.gserviceaccount.com",
               "schedule", "create", "--cron", "0 3 * * 1", "--time-zone", "Europe/Paris",
               "--max-runs", "10", "--name", "Weekly Dolly")
    assert r.exit_code == 0, r.output
    [sent] = vertex.schedules
    # python-aiplatform#4039: the job's project/location, not aiplatform.init's defaults.
    assert sent["parent"] == "projects/my-proj/locations/us-central1"
    s = sent["schedule"]
    assert s.cron == "TZ=Europe/Paris 0 3 * * 1"
    assert s.max_run_count == 10 and s.max_concurrent_run_count == 1
    assert s.display_name == "Weekly Dolly"
    job = s.create_pipeline_job_request.pipeline_job
    assert s.create_pipeline_job_request.parent == "projects/my-proj/locations/us-central1"
    # python-aiplatform#2929: every scheduled run carries our labels.
    assert dict(job.labels) | {"git-commit": "x"} == {
        "pipeline": "dolly-lora", "team": "ml", "schedule": "weekly-dolly", "git-commit": "x"}
    assert job.service_account == "sa@my-proj.iam.gserviceaccount.com"
    assert job.runtime_config.gcs_output_directory == "gs://my-bucket/pipelines"
    assert dict(job.runtime_config.parameter_values)["max_steps"] == 30
    assert job.pipeline_spec["pipelineInfo"]["name"] == "dolly-lora"
    assert r.stdout.strip() == "projects/my-proj/locations/us-central1/schedules/123"
    assert not any(v in str(s) for v in SECRET_VALUES)


def test_create_dry_run_sends_nothing(vertex: Captured, template: Path) -> None:
    r = invoke(*BASE, "--template", str(template), "--dry-run", "schedule", "create",
               "--cron", "30 2 1 * *")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["method"].endswith("ScheduleService.CreateSchedule")
    assert out["request"]["schedule"]["cron"] == "30 2 1 * *"
    assert out["request"]["parent"] == "projects/my-proj/locations/us-central1"
    assert not vertex.schedules


@pytest.mark.parametrize("action", ["pause", "resume", "delete"])
def test_pause_resume_delete(vertex: Captured, action: str) -> None:
    r = invoke("--project", "my-proj", "--region", "us-central1", "schedule", action, "123")
    assert r.exit_code == 0, r.output
    name = "projects/my-proj/locations/us-central1/schedules/123"
    assert ("get", name) in vertex.calls and (action, name) in vertex.calls


@pytest.mark.parametrize("cron", ["0 3 * * 1", "*/15 * * * *", "0 0 1,15 * mon-fri",
                                  "5 4 * jan,jul sun", "0 22 * * 1-5"])
def test_valid_cron(cron: str) -> None:
    assert check_cron(cron) == cron


@pytest.mark.parametrize(("cron", "message"), [
    ("0 3 * *", "needs 5 fields"),
    ("61 3 * * 1", "out of range 0-59"),
    ("0 24 * * 1", "out of range 0-23"),
    ("0 3 * 13 1", "out of range 1-12"),
    ("0 3 * * funday", "out of range"),
    ("0 3 ? * 1", "is not valid"),
])
def test_invalid_cron(cron: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_cron(cron)


def test_unknown_time_zone() -> None:
    with pytest.raises(InputError, match="unknown time zone"):
        schedule_cron("0 3 * * 1", "Mars/Olympus")


def test_invalid_cron_on_the_command_line_sends_nothing(vertex: Captured, template: Path) -> None:
    r = invoke(*BASE, "--template", str(template), "schedule", "create", "--cron", "every day")
    assert r.exit_code == 2 and "cron 'every day'" in r.output
    assert not vertex.schedules


def test_pause_dry_run_sends_nothing_and_needs_no_credentials(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    r = invoke("--project", "my-proj", "--region", "us-central1", "--dry-run", "schedule",
               "pause", "123")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {
        "method": "google.cloud.aiplatform.v1.ScheduleService.PauseSchedule",
        "request": {"name": "projects/my-proj/locations/us-central1/schedules/123"}}


def test_a_cron_step_of_zero_is_refused() -> None:
    with pytest.raises(InputError, match="step /0 must be between 1 and 59"):
        check_cron("*/0 * * * *")
    with pytest.raises(InputError, match="step /0 must be between 1 and 23"):
        check_cron("0 */0 * * *")
    assert check_cron("*/59 * * * *")


def test_a_scheduled_run_keys_the_cache_on_the_data_content(vertex: Captured,
                                                            template: Path) -> None:
    """Each scheduled run reads the data's content key afresh (caching off) and prepare-data
    takes it as an input: a rewritten gs:// object retrains, an unchanged one reuses the cache."""
    r = invoke(*BASE, "--template", str(template), "--param", "dataset=gs://b/dolly.jsonl",
               "schedule", "create", "--cron", "0 3 * * 1")
    assert r.exit_code == 0, r.output
    job = vertex.schedules[0]["schedule"].create_pipeline_job_request.pipeline_job
    tasks = job.pipeline_spec["root"]["dag"]["tasks"]
    key = tasks["data-key"]
    assert not key["cachingOptions"].get("enableCache"), "the key is read at every run"
    assert key["inputs"]["parameters"]["dataset"] == {"componentInputParameter": "dataset"}
    assert tasks["prepare-data"]["inputs"]["parameters"]["data_key"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "data-key"}}
    assert tasks["prepare-data"]["cachingOptions"]["enableCache"]
    assert dict(job.runtime_config.parameter_values)["dataset"] == "gs://b/dolly.jsonl"
    assert "data key" in r.stderr and "resolved by the data-key step at each run" in r.stderr
