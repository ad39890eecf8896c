"""Tracking on Vertex AI: --experiment joins the run to a Vertex AI experiment and hands its name
to the steps; --tensorboard attaches a Vertex TensorBoard to the fine-tune custom job.

The real google-cloud-aiplatform client builds every request; `vertex` captures the pipeline
service calls and `vertex_metadata` serves Vertex ML Metadata (experiments) in memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.submit import app
from tests.cli.vertex_fakes import METADATA_STORE, Captured, MetadataStore

BASE = ["--project", "my-proj", "--region", "us-central1",
        "--pipeline-root", "gs://my-bucket/pipelines", "--public-model"]
TENSORBOARD = "projects/my-proj/locations/us-central1/tensorboards/1234567890"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DOLLY_LORA_", "GOOGLE_CLOUD_")) or name == "KFP_HOST":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env, no build/ from the checkout


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_dry_run_shows_the_experiment(vertex: Captured, template: Path) -> None:
    r = invoke(*BASE, "--template", str(template), "--experiment", "dolly-exp", "--dry-run")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["experiment"] == "dolly-exp"
    params = out["request"]["pipelineJob"]["runtimeConfig"]["parameterValues"]
    assert params["vertex_experiment"] == "dolly-exp"
    # the template's default trackers (wandb) do not log to the experiment: say how to
    assert "--param trackers=wandb,vertex" in r.stderr
    assert not vertex.pipeline_jobs


def test_submit_with_experiment_joins_the_run_to_it(vertex: Captured,
                                                    vertex_metadata: MetadataStore,
                                                    template: Path) -> None:
    r = invoke(*BASE, "--template", str(template), "--experiment", "dolly-exp",
               "--param", "trackers=tensorboard,vertex", "--run-id", "dolly-lora-exp")
    assert r.exit_code == 0, r.output
    assert "--param trackers" not in r.stderr  # vertex is among the trackers
    [sent] = vertex.pipeline_jobs
    params = dict(sent["pipeline_job"].runtime_config.parameter_values)
    assert params["vertex_experiment"] == "dolly-exp"
    assert params["trackers"] == "tensorboard,vertex"
    experiment = vertex_metadata.context("dolly-exp")
    assert experiment.schema_title == "system.Experiment"
    assert vertex_metadata.children[experiment.name] == [
        f"{METADATA_STORE}/contexts/dolly-lora-exp"]


def test_a_bad_experiment_name_fails_before_anything_is_sent(vertex: Captured,
                                                              template: Path) -> None:
    r = invoke(*BASE, "--template", str(template), "--experiment", "Dolly Exp", "--dry-run")
    assert r.exit_code == 2
    [line] = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert "Vertex experiment name 'Dolly Exp'" in line
    assert not vertex.pipeline_jobs


def test_tensorboard_is_attached_to_the_fine_tune_job(vertex: Captured) -> None:
    """--tensorboard recompiles the default template: the fine-tune custom job names the
    TensorBoard and its base output directory; the other GPU jobs do not stream."""
    args = [*BASE, "--tensorboard", TENSORBOARD, "--base-output-dir", "gs://my-bucket/tb",
            "--dry-run"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    jobs = json.loads(r.stdout)["custom_jobs"]
    assert jobs["fine-tune"]["tensorboard"] == TENSORBOARD
    assert jobs["fine-tune"]["base_output_directory"] == "gs://my-bucket/tb"
    assert "tensorboard" not in jobs["evaluate"] and "tensorboard" not in jobs["inference"]
    spec = json.loads(r.stdout)["request"]["pipelineJob"]["pipelineSpec"]
    inputs = spec["components"]["comp-fine-tune"]["inputDefinitions"]["parameters"]
    assert inputs["tensorboard"]["defaultValue"] == TENSORBOARD
    # the same settings again: the template is not stale, no recompile
    again = invoke(*args)
    assert again.exit_code == 0 and "compiled" not in again.stderr


def test_tensorboard_without_an_output_directory_is_one_clear_line(vertex: Captured) -> None:
    r = invoke(*BASE, "--tensorboard", TENSORBOARD, "--dry-run")
    assert r.exit_code == 2
    [line] = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert "--base-output-dir gs://BUCKET/tensorboard" in line
    assert not Path("build").exists() or not any(Path("build").iterdir())
