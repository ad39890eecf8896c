"""`submit` for Vertex AI: the request it sends, --dry-run, --wait, upload, --kfp-host, bad input.

The real google-cloud-aiplatform client builds every request; `conftest.vertex` captures it at
the GAPIC layer. No network, no credentials.
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
from tests.cli.vertex_fakes import IMAGE, SECRET_VALUES, Captured

ROOT = Path(__file__).resolve().parents[2]
# --public-model: these tests are about the request; test_first_vertex_run covers the token.
BASE = ["--project", "my-proj", "--region", "us-central1",
        "--pipeline-root", "gs://my-bucket/pipelines", "--public-model"]
HF_SECRET = "projects/my-proj/secrets/hf-token"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DOLLY_LORA_", "GOOGLE_CLOUD_")) or name == "KFP_HOST":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env, no build/ from the checkout


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def training_worker_pool(pipeline_spec: dict[str, Any]) -> dict[str, Any]:
    """The custom-job worker pool of the fine-tune task, from a pipeline spec."""
    comp = pipeline_spec["components"]["comp-fine-tune"]["inputDefinitions"]["parameters"]
    return comp["worker_pool_specs"]["defaultValue"][0]


def all_tasks(pipeline_spec: dict[str, Any]) -> dict[str, Any]:
    tasks = dict(pipeline_spec["root"]["dag"]["tasks"])
    for comp in pipeline_spec["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


def test_help_needs_no_heavy_import() -> None:
    code = ("import sys; from typer.testing import CliRunner; from cli.submit import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('google.cloud.aiplatform', 'kfp', 'torch') if m in sys.modules];"
            " print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_dry_run_prints_the_request(vertex: Captured, template: Path) -> None:
    r = invoke(*BASE, "--template", str(template), "--param", "max_steps=20",
               "--param", "lora_r=8", "--label", "team=ml", "--label", "cost-center=42",
               "--service-account", "runner@my-proj.iam.gserviceaccount.com", "--no-cache",
               "--hf-token-secret", HF_SECRET, "--run-id", "dolly-lora-test", "--dry-run")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    req = out["request"]
    job = req["pipelineJob"]
    assert out["method"].endswith("PipelineService.CreatePipelineJob")
    assert req["parent"] == "projects/my-proj/locations/us-central1"
    assert req["pipelineJobId"] == "dolly-lora-test"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://my-bucket/pipelines"
    values = dict(job["runtimeConfig"]["parameterValues"])
    estimate = json.loads(values.pop("cost_estimate"))  # for the report: estimate vs actual
    assert values == {"max_steps": 20, "lora_r": 8, "hf_token_secret": HF_SECRET}
    assert estimate == out["cost_estimate"] and estimate["profile"] == "default"
    assert estimate["train_tokens"] == 20 * 16 * 1024  # max_steps x global batch x max_seq_len
    assert job["serviceAccount"] == "runner@my-proj.iam.gserviceaccount.com"
    labels = job["labels"]
    assert labels["pipeline"] == "dolly-lora" and labels["team"] == "ml"
    assert labels["cost-center"] == "42" and labels["git-commit"]
    pool = training_worker_pool(job["pipelineSpec"])
    assert pool["machine_spec"] == {"machine_type": "g2-standard-8",
                                    "accelerator_type": "NVIDIA_L4", "accelerator_count": 1}
    assert pool["container_spec"]["image_uri"] == IMAGE
    tasks = all_tasks(job["pipelineSpec"])
    assert {"prepare-data", "fine-tune", "evaluate", "inference", "register-model"} <= set(tasks)
    assert all(t["cachingOptions"].get("enableCache", False) is False for t in tasks.values())
    text = r.stdout
    assert not any(s in text for s in SECRET_VALUES)
    assert not vertex.pipeline_jobs  # nothing sent


def test_submit_sends_what_dry_run_prints(vertex: Captured, template: Path) -> None:
    args = [*BASE, "--template", str(template), "--param", "learning_rate=1e-4",
            "--label", "team=ml", "--cache", "--network",
            "projects/123/global/networks/vpc", "--run-id", "dolly-lora-same"]
    dry = json.loads(invoke(*args, "--dry-run").stdout)["request"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert "console.cloud.google.com" in r.stdout and "dolly-lora-same" in r.stdout
    [sent] = vertex.pipeline_jobs
    from google.cloud.aiplatform_v1.types import PipelineJob

    sent_job = json.loads(PipelineJob.to_json(sent["pipeline_job"],
                                              always_print_fields_with_no_presence=False))
    assert sent["parent"] == dry["parent"] and sent["pipeline_job_id"] == dry["pipelineJobId"]
    assert sent_job == dry["pipelineJob"]
    assert sent_job["network"] == "projects/123/global/networks/vpc"
    sent_values = dict(sent_job["runtimeConfig"]["parameterValues"])
    assert json.loads(sent_values.pop("cost_estimate"))["usd"] > 0
    assert sent_values == {"learning_rate": 1e-4}
    assert ("bucket_check", "gs://my-bucket/pipelines") in vertex.calls
    assert not any(s in json.dumps(sent_job) for s in SECRET_VALUES)


def test_wait_fails_with_the_failed_task(vertex: Captured, template: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import vertex as vx

    naps: list[float] = []
    monkeypatch.setattr(vx, "_sleep", naps.append)
    vertex.job_states = ["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_RUNNING",
                         "PIPELINE_STATE_FAILED"]
    r = invoke(*BASE, "--template", str(template), "--wait")
    assert r.exit_code == 1
    assert "ended FAILED" in r.output and "failed task: fine-tune" in r.output
    assert "prepare-data" not in r.output.split("failed task:")[1]
    assert len(naps) == 2


def test_wait_succeeds(vertex: Captured, template: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import vertex as vx

    monkeypatch.setattr(vx, "_sleep", lambda s: None)
    vertex.job_states = ["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_SUCCEEDED"]
    r = invoke(*BASE, "--template", str(template), "--wait")
    assert r.exit_code == 0, r.output
    assert "SUCCEEDED" in r.output


def test_options_from_environment(vertex: Captured, template: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOLLY_LORA_PROJECT", "env-proj")
    monkeypatch.setenv("DOLLY_LORA_REGION", "us-central1")
    monkeypatch.setenv("DOLLY_LORA_PIPELINE_ROOT", "gs://env-bucket/root")
    monkeypatch.setenv("DOLLY_LORA_LABELS", "team=env,owner=ci")
    monkeypatch.setenv("DOLLY_LORA_TEMPLATE", str(template))
    monkeypatch.setenv("DOLLY_LORA_HF_TOKEN_SECRET", HF_SECRET)
    r = invoke("--dry-run")
    assert r.exit_code == 0, r.output
    req = json.loads(r.stdout)["request"]
    assert req["parent"] == "projects/env-proj/locations/us-central1"
    assert req["pipelineJob"]["labels"]["owner"] == "ci"


def test_placeholder_image_is_refused_for_a_real_submit(vertex: Captured, tmp_path: Path) -> None:
    from pipelines.compiler import compile_pipeline

    tpl = compile_pipeline(tmp_path / "placeholder.yaml")
    r = invoke(*BASE, "--template", str(tpl))
    assert r.exit_code == 2 and "placeholder image" in r.output
    assert not vertex.pipeline_jobs
    assert invoke(*BASE, "--template", str(tpl), "--dry-run").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--region", "us-central1", "--pipeline-root", "gs://b/p"], "missing --project"),
        (["--project", "my-proj", "--pipeline-root", "gs://b/p"], "missing --region"),
        ([*BASE[:4], "--pipeline-root", "/tmp/local"], "must be a gs:// bucket path"),
        ([*BASE[:2], "--region", "us-central9", *BASE[4:]], "unknown Vertex AI region"),
        ([*BASE[:6], "--param", "base_model=meta-llama/Llama-3.2-1B-Instruct"],
         "no HF token secret is given"),
        ([*BASE, "--template", "nope.yaml"], "does not exist"),
        ([*BASE, "--param", "lora_rank=8"], "unknown pipeline parameter 'lora_rank'"),
        ([*BASE, "--param", "max_steps=many"], "max_steps"),
        ([*BASE, "--param", "lora_r=0"], "LoRA rank must be a positive integer"),
        ([*BASE, "--label", "Bad Label=x"], "label 'Bad Label=x'"),
        ([*BASE, "--hf-token-secret", "hf_abcdef123"], "Secret Manager resource name"),
        ([*BASE, "--template", "https://example.com/x.yaml"], "not an Artifact Registry"),
    ],
)
def test_bad_input_is_one_line_and_sends_nothing(
    vertex: Captured, template: Path, args: list[str], message: str
) -> None:
    if "--template" not in args:
        args = [*args, "--template", str(template)]
    r = invoke(*args, "--dry-run")
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert r.output.strip().count("\n") == 0 or "error:" in r.output.splitlines()[-1]
    assert not vertex.pipeline_jobs


def test_template_that_is_not_a_pipeline(vertex: Captured, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-pipeline.yaml"
    bad.write_text("hello: world\n")
    r = invoke(*BASE, "--template", str(bad), "--dry-run")
    assert r.exit_code == 2 and "is not a compiled KFP pipeline" in r.output


def test_region_list_is_known_to_aiplatform() -> None:
    from google.cloud.aiplatform import constants

    from cli.vertex import VERTEX_REGIONS

    assert set(constants.base.SUPPORTED_REGIONS) >= VERTEX_REGIONS


def test_kfp_host_submits_a_kfp_template(
    template: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Vertex template (gcpc custom jobs, Vertex-only placeholders) is refused for a KFP host;
    one compiled with --target kfp is sent."""
    import kfp

    from pipelines import compiler

    r = invoke("--kfp-host", "http://kfp.local:8080", "--template", str(template),
               "--public-model")
    assert r.exit_code == 2 and "target is 'vertex' in it, 'kfp' wanted" in r.output
    kfp_template = tmp_path / "kfp.yaml"
    compiler.main(["--out", str(kfp_template), "--target", "kfp", "--image", IMAGE])
    seen: dict[str, Any] = {}

    class FakeClient:
        def __init__(self, host: str) -> None:
            seen["host"] = host

        def create_run_from_pipeline_package(self, **kw: Any) -> Any:
            seen.update(kw)
            return type("Run", (), {"run_id": "run-42"})()

    monkeypatch.setattr(kfp, "Client", FakeClient)
    r = invoke("--kfp-host", "http://kfp.local:8080", "--template", str(kfp_template),
               "--param", "max_steps=5", "--no-cache", "--experiment", "exp1", "--public-model")
    assert r.exit_code == 0, r.output
    assert seen["host"] == "http://kfp.local:8080"
    assert seen["pipeline_file"] == str(kfp_template)
    assert seen["arguments"] == {"max_steps": 5}
    assert seen["enable_caching"] is False and seen["experiment_name"] == "exp1"
    assert r.stdout.strip().endswith("/#/runs/details/run-42")


def test_upload_tags_commit_and_latest(template: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import requests
    from kfp.registry import ApiAuth

    from cli import vertex as vx

    posted: dict[str, Any] = {}

    def post(url: str, data: dict[str, str], **kw: Any) -> Any:
        posted.update(url=url, data=data, name=kw["files"]["content"].name)
        resp = requests.Response()
        resp.status_code, resp._content = 200, b"dolly-lora/sha256:abc"
        return resp

    monkeypatch.setattr(requests, "post", post)
    package, version = vx.upload_template(template, "my-proj", "us-central1", "dolly-lora",
                                          ["abc123", "latest"], auth=ApiAuth("token"))
    assert (package, version) == ("dolly-lora", "sha256:abc")
    assert posted["url"] == "https://us-central1-kfp.pkg.dev/my-proj/dolly-lora"
    assert posted["data"] == {"tags": "abc123,latest"}
    assert posted["name"] == str(template)


def test_spot_training_needs_a_checkpoint_uri(vertex: Captured, tmp_path: Path) -> None:
    """Preemptible capacity without checkpoints would restart from zero: refuse before sending."""
    from pipelines import compiler

    spot = tmp_path / "spot.yaml"
    compiler.main(["--out", str(spot), "--image", IMAGE, "--capacity", "SPOT"])
    r = invoke(*BASE, "--template", str(spot))
    assert r.exit_code == 2
    assert "--checkpoint-uri" in r.output and "SPOT" in r.output
    assert not vertex.pipeline_jobs
    r = invoke(*BASE, "--template", str(spot), "--checkpoint-uri", "gs://my-bucket/ckpt",
               "--dry-run")
    assert r.exit_code == 0, r.output
    request = json.loads(r.stdout)["request"]["pipelineJob"]
    assert request["runtimeConfig"]["parameterValues"]["checkpoint_uri"] == "gs://my-bucket/ckpt"
    spec = request["pipelineSpec"]
    params = spec["components"]["comp-fine-tune"]["inputDefinitions"]["parameters"]
    assert params["strategy"]["defaultValue"] == "SPOT"
    assert params["restart_job_on_worker_restart"]["defaultValue"] is True
