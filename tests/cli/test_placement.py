"""Refused before submit, in one line (exit 2): a region with no L4, a TensorBoard or an image
registry in another region, a job id that starts with a digit; nothing sent."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.submit import app
from tests.cli.vertex_fakes import IMAGE, Captured

WHERE = ["--project", "my-proj", "--pipeline-root", "gs://my-bucket/pipelines", "--public-model"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DOLLY_LORA_", "GOOGLE_CLOUD_")) or name == "KFP_HOST":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DOLLY_LORA_IMAGE", IMAGE)  # in us-central1
    monkeypatch.chdir(tmp_path)


def refused(*args: str) -> str:
    r: Any = CliRunner().invoke(app, [*WHERE, *args])
    assert r.exit_code == 2, r.output
    [line] = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert not Path("build").exists(), "nothing written"
    return line


@pytest.mark.parametrize(("args", "start"), [
    (["--region", "europe-north1"], "error: region europe-north1 has no NVIDIA L4 (G2) machines"),
    (["--region", "us-central1", "--tensorboard",
      "projects/my-proj/locations/europe-west4/tensorboards/123",
      "--base-output-dir", "gs://my-bucket/tb"],
     "error: the TensorBoard projects/my-proj/locations/europe-west4/tensorboards/123 is in "
     "europe-west4, the run in us-central1"),
    (["--region", "europe-west4"], "error: the image is in the us-central1 registry "),
])
def test_refused_before_submit(vertex: Captured, args: list[str], start: str) -> None:
    line = refused(*args)
    assert line.startswith(start), line
    assert not vertex.pipeline_jobs and not vertex.calls


def test_a_job_id_must_start_with_a_letter(vertex: Captured) -> None:
    line = refused("--region", "us-central1", "--run-id", "7-dolly")
    assert "job id '7-dolly': a lowercase letter, then" in line


def test_a_multi_region_registry_on_the_same_continent_is_fine(
        vertex: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOLLY_LORA_IMAGE", IMAGE.replace("us-central1-docker", "us-docker"))
    r = CliRunner().invoke(app, [*WHERE, "--region", "us-east4", "--dry-run"])
    assert r.exit_code == 0, r.output
