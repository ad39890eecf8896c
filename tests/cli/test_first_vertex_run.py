"""What would break or waste the first real Vertex run, caught by `submit` before it sends.

The identity the custom jobs run as, a gated model without a token, --checkpoint-uri on Vertex,
and templates that no longer match the code or the settings asked for. Real aiplatform client,
requests captured (`vertex_fakes`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.submit import app
from pipelines import compiler
from pipelines.machines import GPU_STEPS, NETWORK_PLACEHOLDER, SERVICE_ACCOUNT_PLACEHOLDER
from tests.cli.vertex_fakes import IMAGE, Captured

WHERE = ["--project", "my-proj", "--region", "us-central1",
         "--pipeline-root", "gs://my-bucket/pipelines"]
SA = "runner@my-proj.iam.gserviceaccount.com"
NETWORK = "projects/123/global/networks/vpc"
HF_SECRET = "projects/my-proj/secrets/hf-token"
OTHER_IMAGE = "us-central1-docker.pkg.dev/my-proj/dolly-lora/trainer@sha256:" + "cd" * 32


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DOLLY_LORA_", "GOOGLE_CLOUD_")) or name == "KFP_HOST":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env, and a build/ of this test's own


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def dry_run(*args: str) -> dict[str, Any]:
    r = invoke(*WHERE, *args, "--dry-run")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def pool_image(request: dict[str, Any]) -> str:
    params = request["pipelineJob"]["pipelineSpec"]["components"]["comp-fine-tune"][
        "inputDefinitions"]["parameters"]
    return params["worker_pool_specs"]["defaultValue"][0]["container_spec"]["image_uri"]


def test_custom_jobs_run_as_the_submitted_service_account(vertex: Captured,
                                                          template: Path) -> None:
    out = dry_run("--template", str(template), "--hf-token-secret", HF_SECRET,
                  "--service-account", SA, "--network", NETWORK)
    job = out["request"]["pipelineJob"]
    assert job["serviceAccount"] == SA and job["network"] == NETWORK
    components = job["pipelineSpec"]["components"]
    for step in GPU_STEPS:
        params = components[f"comp-{step}"]["inputDefinitions"]["parameters"]
        # Vertex resolves these from the PipelineJob above when it starts the custom job.
        assert params["service_account"]["defaultValue"] == SERVICE_ACCOUNT_PLACEHOLDER
        assert params["network"]["defaultValue"] == NETWORK_PLACEHOLDER
        resolved = out["custom_jobs"][step]
        assert resolved["service_account"] == SA and resolved["network"] == NETWORK, step
        assert resolved["machine_spec"]["accelerator_type"] == "NVIDIA_L4"
    assert not vertex.pipeline_jobs


def test_sent_request_carries_the_identity(vertex: Captured, template: Path) -> None:
    r = invoke(*WHERE, "--template", str(template), "--hf-token-secret", HF_SECRET,
               "--service-account", SA, "--network", NETWORK)
    assert r.exit_code == 0, r.output
    [sent] = vertex.pipeline_jobs
    assert sent["pipeline_job"].service_account == SA
    assert sent["pipeline_job"].network == NETWORK


def test_gated_model_without_token_is_refused_before_any_heavy_import(tmp_path: Path) -> None:
    """The default model (gated Gemma) without --hf-token-secret: one line, exit 2, and no kfp,
    aiplatform or torch import on the way (the refusal takes about a second)."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cli.submit import app\n"
        "r = CliRunner().invoke(app, sys.argv[1:])\n"
        "heavy = [m for m in ('google.cloud.aiplatform', 'kfp', 'torch') if m in sys.modules]\n"
        "print(r.exit_code, heavy)\n"
        "print(r.output)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOLLY_LORA_")}
    proc = subprocess.run([sys.executable, "-c", code, *WHERE], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    status, output = proc.stdout.split("\n", 1)
    assert status == "2 []"
    assert output.strip().count("\n") == 0
    assert "--hf-token-secret" in output and "google/gemma-3-1b-it" in output


@pytest.mark.parametrize("extra", [
    ["--hf-token-secret", HF_SECRET],
    ["--public-model"],
    ["--param", "base_model=embedded://tiny-gemma3"],
    ["--param", "base_model=gs://my-bucket/models/gemma-3-1b-it"],
])
def test_a_token_or_a_model_that_needs_none_passes(vertex: Captured, template: Path,
                                                   extra: list[str]) -> None:
    dry_run("--template", str(template), *extra)


def test_token_secret_from_the_environment(vertex: Captured, template: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOLLY_LORA_HF_TOKEN_SECRET", HF_SECRET)
    out = dry_run("--template", str(template))
    values = out["request"]["pipelineJob"]["runtimeConfig"]["parameterValues"]
    assert values["hf_token_secret"] == HF_SECRET


def test_checkpoint_uri_reaches_a_vertex_run(vertex: Captured, template: Path) -> None:
    out = dry_run("--template", str(template), "--public-model",
                  "--checkpoint-uri", "gs://my-bucket/ckpt")
    values = dict(out["request"]["pipelineJob"]["runtimeConfig"]["parameterValues"])
    values.pop("cost_estimate")
    assert values == {"checkpoint_uri": "gs://my-bucket/ckpt"}


def test_default_template_follows_the_image_asked_for(
    vertex: Captured, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No build/ yet: compiled with DOLLY_LORA_IMAGE. Another image later: recompiled, never the
    stale file."""
    monkeypatch.setenv("DOLLY_LORA_IMAGE", IMAGE)
    r = invoke(*WHERE, "--public-model", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "compiled build/dolly-lora.yaml: it did not exist" in r.stderr
    assert pool_image(json.loads(r.stdout)["request"]) == IMAGE
    again = invoke(*WHERE, "--public-model", "--dry-run")
    assert again.exit_code == 0 and "compiled" not in again.stderr  # up to date: reused
    monkeypatch.setenv("DOLLY_LORA_IMAGE", OTHER_IMAGE)
    r = invoke(*WHERE, "--public-model", "--dry-run")
    assert r.exit_code == 0, r.output
    assert f"image is {IMAGE!r} in it, {OTHER_IMAGE!r} wanted" in r.stderr
    assert pool_image(json.loads(r.stdout)["request"]) == OTHER_IMAGE
    assert compiler.read_stamp(tmp_path / "build" / "dolly-lora.yaml")["settings"][
        "image"] == OTHER_IMAGE


def test_recompiling_keeps_the_compile_flags(vertex: Captured, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`compile.py --image X --capacity SPOT`, then the code changes: submit recompiles with X
    and SPOT, not the defaults."""
    compiler.main(["--image", IMAGE, "--capacity", "SPOT"])
    monkeypatch.setattr(compiler, "source_digest", lambda root=None: "changed-code")
    r = invoke(*WHERE, "--public-model", "--checkpoint-uri", "gs://my-bucket/c", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "pipeline code changed" in r.stderr
    spec = json.loads(r.stdout)["request"]["pipelineJob"]["pipelineSpec"]
    params = spec["components"]["comp-fine-tune"]["inputDefinitions"]["parameters"]
    assert params["strategy"]["defaultValue"] == "SPOT"
    assert pool_image(json.loads(r.stdout)["request"]) == IMAGE


def test_a_named_stale_template_is_refused(vertex: Captured, template: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOLLY_LORA_IMAGE", OTHER_IMAGE)
    r = invoke(*WHERE, "--template", str(template), "--public-model", "--dry-run")
    assert r.exit_code == 2
    assert "does not match" in r.output and OTHER_IMAGE in r.output
    monkeypatch.delenv("DOLLY_LORA_IMAGE")
    monkeypatch.setattr(compiler, "source_digest", lambda root=None: "changed-code")
    r = invoke(*WHERE, "--template", str(template), "--public-model", "--dry-run")
    assert r.exit_code == 2 and "pipeline code changed" in r.output
    assert not vertex.pipeline_jobs


def test_a_template_without_stamp_is_refused(vertex: Captured, template: Path,
                                             tmp_path: Path) -> None:
    bare = tmp_path / "bare.yaml"
    bare.write_text(template.read_text().split("\n", 1)[1])
    r = invoke(*WHERE, "--template", str(bare), "--public-model", "--dry-run")
    assert r.exit_code == 2 and "no build stamp" in r.output


def test_job_label_is_the_template_commit(vertex: Captured, template: Path) -> None:
    out = dry_run("--template", str(template), "--public-model")
    labels = out["request"]["pipelineJob"]["labels"]
    assert labels["git-commit"] == compiler.read_stamp(template)["commit"][:63]
