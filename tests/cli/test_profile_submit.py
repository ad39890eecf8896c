"""`submit --profile NAME --dry-run`: the machine, its accelerators and the cost estimate before
anything is sent; `--max-cost` refuses in one line (exit 2) and sends nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.submit import app
from pipelines import compiler
from pipelines.settings import resolve
from planning.memory import generation_machine
from planning.profiles import GPU_PROFILES as PROFILES
from tests.cli.vertex_fakes import IMAGE, Captured

WHERE = ["--project", "my-proj", "--region", "us-central1",
         "--pipeline-root", "gs://my-bucket/pipelines", "--public-model"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DOLLY_LORA_", "GOOGLE_CLOUD_")) or name == "KFP_HOST":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DOLLY_LORA_IMAGE", IMAGE)
    monkeypatch.chdir(tmp_path)  # a build/ of this test's own


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("name", list(PROFILES))
def test_dry_run_of_each_profile_shows_machine_accelerators_and_cost(vertex: Captured,
                                                                     name: str) -> None:
    p = PROFILES[name]
    r = invoke(*WHERE, "--profile", name, "--dry-run")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert f"profile {name}, {p.machine_type} with {p.accelerator_count} x NVIDIA_L4" in r.stderr
    assert "estimated cost: $" in r.stderr and "training tokens:" in r.stderr
    assert out["cost_estimate"]["machine_type"] == p.machine_type
    assert out["cost_estimate"]["accelerator_count"] == p.accelerator_count
    jobs = out["custom_jobs"]
    assert jobs["fine-tune"]["machine_spec"]["machine_type"] == p.machine_type
    assert jobs["fine-tune"]["machine_spec"]["accelerator_count"] == p.accelerator_count
    # evaluate and inference: the smallest machine that holds the model for generation
    gen = generation_machine(resolve(profile=name).params, p.machine)
    for step in ("evaluate", "inference"):
        assert jobs[step]["machine_spec"]["machine_type"] == gen.machine_type
    steps = out["cost_estimate"]["steps"]
    for step, job in jobs.items():  # each deadline is the estimate's, far below 24 h
        assert float(job["timeout"].rstrip("s")) == steps[step]["timeout_seconds"] < 24 * 3600 / 3
    assert f"{'fine-tune'}: {p.machine_type}" in r.stderr and "worst case (every GPU step" in r.stderr
    assert out["cost_estimate"]["worst_usd"] > out["cost_estimate"]["usd"]
    stamp = compiler.read_stamp(Path("build/dolly-lora.yaml"))
    assert stamp["settings"]["profile"] == name
    assert not vertex.pipeline_jobs
    memory = out["cost_estimate"]["memory_gib"]  # every GPU step's expected peak, per GPU
    assert set(memory) == {"fine-tune", "evaluate", "inference"}
    assert all(0 < gib < 20.25 for gib in memory.values()), memory
    assert "GPU memory, expected peak per GPU: fine-tune" in r.stderr


def test_a_step_that_cannot_fit_its_gpu_is_refused_before_anything_is_sent(
        vertex: Captured) -> None:
    """Evaluation's batch of 512 rows x 1,024 tokens would run out of memory after the paid
    training: refused by the arithmetic, in one line, before the run exists."""
    r = invoke(*WHERE, "--dry-run", "--param", "generation_batch_size=512")
    assert r.exit_code == 2
    [line] = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: evaluate needs about ") and "GiB one NVIDIA_L4 has" in line
    assert line.endswith("lower generation_batch_size, eval_max_rows or max_seq_len")
    assert not vertex.pipeline_jobs and not vertex.calls


def test_max_cost_refuses_the_default_profile_in_one_line(vertex: Captured) -> None:
    r = invoke(*WHERE, "--profile", "default", "--max-cost", "0.01")
    assert r.exit_code == 2
    [line] = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert "above --max-cost $0.01" in line
    assert not vertex.pipeline_jobs and not vertex.calls, "nothing was sent"


def test_a_submit_under_the_cap_sends_the_estimate_for_the_report(vertex: Captured) -> None:
    r = invoke(*WHERE, "--profile", "default", "--max-cost", "50", "--param", "max_steps=30")
    assert r.exit_code == 0, r.output
    assert "estimated cost: $" in r.stderr
    [sent] = vertex.pipeline_jobs
    values = dict(sent["pipeline_job"].runtime_config.parameter_values)
    est = json.loads(values["cost_estimate"])
    assert est["train_tokens"] == 30 * 16 * 1024 and est["usd"] < 50


def test_a_parameter_still_overrides_the_profile(vertex: Captured) -> None:
    r = invoke(*WHERE, "--profile", "4b-qlora", "--param", "per_device_train_batch_size=2",
               "--param", "gradient_accumulation_steps=8", "--dry-run")
    assert r.exit_code == 0, r.output
    values = json.loads(r.stdout)["request"]["pipelineJob"]["runtimeConfig"]["parameterValues"]
    assert values["per_device_train_batch_size"] == 2
    assert json.loads(r.stdout)["cost_estimate"]["profile"] == "4b-qlora"


def test_an_unknown_profile_is_one_line(vertex: Captured) -> None:
    r = invoke(*WHERE, "--profile", "70b", "--dry-run")
    assert r.exit_code == 2 and "unknown profile '70b'; choose from default" in r.stderr


def register_display_name(request: dict[str, Any]) -> str:
    """The registry name the template hands register-model (a compile-time constant)."""
    tasks = request["pipelineJob"]["pipelineSpec"]["components"]["comp-condition-1"]["dag"][
        "tasks"]
    return tasks["register-model"]["inputs"]["parameters"]["display_name"]["runtimeValue"][
        "constant"]


@pytest.mark.parametrize(("args", "expected"), [
    (["--param", "base_model=google/gemma-3-4b-it"], "dolly-lora-gemma-3-4b-it"),
    (["--profile", "12b-qlora"], "dolly-lora-gemma-3-12b-it"),
])
def test_the_registry_model_is_named_after_the_runs_base_model(vertex: Captured,
                                                               args: list[str],
                                                               expected: str) -> None:
    """A 4B adapter must never become a version of the 1B model: the default template leaves
    the name to the run (register-model derives it from the base model), and the dry run says
    which registry model the version would join."""
    r = invoke(*WHERE, *args, "--dry-run")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert register_display_name(out["request"]) == ""
    assert out["registry_model"] == expected


def test_a_named_registry_model_wins(vertex: Captured) -> None:
    from pipelines.settings import CompileSettings

    named = compiler.compile_pipeline(
        Path("named.yaml"), CompileSettings(image=IMAGE, model_display_name="team-model"))
    r = invoke(*WHERE, "--template", str(named), "--param", "base_model=google/gemma-3-4b-it",
               "--dry-run")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert register_display_name(out["request"]) == "team-model"
    assert out["registry_model"] == "team-model"


def test_a_template_stamped_with_the_old_profile_name_is_recompiled_without_it(
        vertex: Captured) -> None:
    """Templates compiled while the profile rows fixed the registry name carry that name in
    their stamp as if it had been asked for; the stale default template's recompile drops it."""
    from pipelines.settings import CompileSettings

    old = compiler.compile_pipeline(Path("build/dolly-lora.yaml"), CompileSettings(
        image=IMAGE, model_display_name="dolly-lora-gemma3-1b"))
    first, rest = old.read_text().split("\n", 1)
    stamp = json.loads(first.removeprefix(compiler.STAMP_PREFIX))
    stamp["source"] = "older-code"
    old.write_text(compiler.STAMP_PREFIX + json.dumps(stamp) + "\n" + rest)
    r = invoke(*WHERE, "--param", "base_model=google/gemma-3-4b-it", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "compiled build/dolly-lora.yaml" in r.stderr
    assert json.loads(r.stdout)["registry_model"] == "dolly-lora-gemma-3-4b-it"


def test_a_template_stamped_with_the_old_24_hour_timeout_gets_each_steps_deadline(
        vertex: Captured) -> None:
    """Templates compiled before per-step deadlines carry the then default timeout (86400 s) in
    their stamp as if asked for. Kept, it would make the recompile, the dry-run's worst case and
    every GPU job 24 h again; the stale default template's recompile drops it."""
    from pipelines.settings import CompileSettings

    old = compiler.compile_pipeline(Path("build/dolly-lora.yaml"), CompileSettings(image=IMAGE))
    first, rest = old.read_text().split("\n", 1)
    stamp = json.loads(first.removeprefix(compiler.STAMP_PREFIX))
    stamp["source"] = "older-code"
    stamp["settings"].pop("step_timeouts", None)
    stamp["settings"]["timeout"] = "86400s"
    old.write_text(compiler.STAMP_PREFIX + json.dumps(stamp) + "\n" + rest)
    r = invoke(*WHERE, "--dry-run")
    assert r.exit_code == 0, r.output
    assert "compiled build/dolly-lora.yaml" in r.stderr
    assert "worst case (every GPU step to its timeout): $1.28" in r.stderr
    assert "timeout 24.00 h" not in r.stderr
    new = json.loads(old.read_text().split("\n", 1)[0].removeprefix(compiler.STAMP_PREFIX))
    assert new["settings"]["timeout"] == "" and new["settings"]["step_timeouts"]


def test_max_cost_refuses_a_run_whose_worst_case_is_above_it(vertex: Captured) -> None:
    """Expected $0.37, but three GPU jobs of 30 min each could bill $1.28: a $1 cap refuses."""
    r = invoke(*WHERE, "--max-cost", "1.00")
    assert r.exit_code == 2
    [line] = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: worst case $1.28 (every GPU step running to its timeout, "
                           "1.50 h in all; expected $0.37) is above --max-cost $1.00")
    assert not vertex.pipeline_jobs and not vertex.calls and not Path("build").exists()
    assert invoke(*WHERE, "--max-cost", "1.30", "--dry-run").exit_code == 0


def test_timeout_overrides_every_gpu_steps_deadline_and_the_worst_case(vertex: Captured) -> None:
    r = invoke(*WHERE, "--timeout", "7200s", "--dry-run")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {job["timeout"] for job in out["custom_jobs"].values()} == {"7200s"}
    assert out["cost_estimate"]["worst_usd"] == pytest.approx(3 * 2 * 0.85362, abs=1e-4)
    assert "timeout 2.00 h" in r.stderr
