"""What the first real run depends on, read from the compiled templates of every target.

Identity of the custom jobs, cache keys free of per-job values, Python as the container's PID 1,
GPU steps that refuse to run without their GPU, a real open-source KFP target, and the build
stamp `submit` checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components.common.errors import InputError
from pipelines import compiler
from pipelines.machines import GPU_STEPS, NETWORK_PLACEHOLDER, SERVICE_ACCOUNT_PLACEHOLDER
from pipelines.settings import CompileSettings, exec_python, resolve

IMAGE = "us-central1-docker.pkg.dev/p-1/repo/trainer@sha256:" + "0f" * 32


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("targets")
    return {t: compiler.compile_pipeline(out / f"{t}.yaml", CompileSettings(target=t, image=IMAGE))
            for t in ("vertex", "kfp", "local")}


def documents(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(path.read_text()))


def all_tasks(spec: dict[str, Any]) -> dict[str, Any]:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


def component_of(spec: dict[str, Any], task: str) -> dict[str, Any]:
    return spec["components"][all_tasks(spec)[task]["componentRef"]["name"]]


def worker_pool(spec: dict[str, Any], task: str) -> dict[str, Any]:
    params = component_of(spec, task)["inputDefinitions"]["parameters"]
    return params["worker_pool_specs"]["defaultValue"][0]


def test_every_gpu_step_is_a_custom_job_running_as_the_pipeline_identity(templates) -> None:
    """Left empty, a custom job runs as the Custom Code Service Agent, which can read neither
    the secrets nor the bucket: each one takes the pipeline job's account and network."""
    [spec] = documents(templates["vertex"])
    for step in GPU_STEPS:
        params = component_of(spec, step)["inputDefinitions"]["parameters"]
        assert params["service_account"]["defaultValue"] == SERVICE_ACCOUNT_PLACEHOLDER, step
        assert params["network"]["defaultValue"] == NETWORK_PLACEHOLDER, step
        assert params["display_name"]["defaultValue"] == step
        assert worker_pool(spec, step)["machine_spec"] == {
            "machine_type": "g2-standard-8", "accelerator_type": "NVIDIA_L4",
            "accelerator_count": 1}


def test_evaluate_and_inference_share_the_training_capacity(tmp_path: Path) -> None:
    path = compiler.compile_pipeline(
        tmp_path / "spot.yaml", resolve(settings={"capacity": "SPOT", "image": IMAGE}, env={}).settings)
    [spec] = documents(path)
    for step in GPU_STEPS:
        params = component_of(spec, step)["inputDefinitions"]["parameters"]
        assert params["strategy"]["defaultValue"] == "SPOT", step
        assert params["restart_job_on_worker_restart"]["defaultValue"] is True


@pytest.mark.parametrize("target", ["vertex", "kfp", "local"])
def test_no_step_but_register_gets_a_per_job_value(templates, target: str) -> None:
    """A task input is part of Vertex's cache key: a job-name placeholder would make every
    resubmit recompute (and re-download, re-train) everything."""
    spec = documents(templates[target])[0]
    for name, task in all_tasks(spec).items():
        text = json.dumps(task.get("inputs", {}))
        if name in ("register-model", "condition-1"):  # the gate's sub-DAG holds register
            continue
        assert "{{$.pipeline_job" not in text, name
        assert "{{$.pipeline_job" not in json.dumps(component_of(spec, name)), name
    register = all_tasks(spec)["register-model"]["inputs"]["parameters"]
    assert register["pipeline_job"]["runtimeValue"]["constant"] == "{{$.pipeline_job_name}}"
    for step in ("prepare-data", "fine-tune"):
        assert "run_id" not in component_of(spec, step)["inputDefinitions"]["parameters"]


def commands(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Every user-code container command: plain executors and custom-job worker pools."""
    out = {}
    for name, ex in spec["deploymentSpec"]["executors"].items():
        if ex["container"]["image"] == IMAGE:
            out[name] = ex["container"]["command"]
    for step in GPU_STEPS:
        if "worker_pool_specs" in json.dumps(component_of(spec, step)):
            out[step] = worker_pool(spec, step)["container_spec"]["command"]
    return out


@pytest.mark.parametrize("target", ["vertex", "kfp", "local"])
def test_python_replaces_the_shell(templates, target: str) -> None:
    """SIGTERM (Spot preemption) goes to the container's PID 1 only: Python must be it."""
    found = commands(documents(templates[target])[0])
    assert len(found) == 11  # every step, in a plain executor or a custom job worker pool
    for name, command in found.items():
        script = command[2]
        assert command[:2] == ["sh", "-ec"], name
        assert "\nexec python3 -m components.common.entrypoint" in script, name
        assert "_KFP_RUNTIME=true python3" not in script, name


def test_exec_rewrite_refuses_an_unknown_command() -> None:
    with pytest.raises(RuntimeError, match="cannot make Python PID 1"):
        exec_python(["sh", "-c", "python3 -m something_else"])


@pytest.mark.parametrize(("target", "want"), [("vertex", "NVIDIA_L4"), ("kfp", "NVIDIA_L4"),
                                              ("local", "")])
def test_gpu_steps_know_the_accelerator_they_need(templates, target: str, want: str) -> None:
    spec = documents(templates[target])[0]
    tasks = all_tasks(spec)
    for step in GPU_STEPS:
        value = tasks[step]["inputs"]["parameters"]["required_accelerator"]
        assert value["runtimeValue"]["constant"] == want, (target, step)
    for step in ("prepare-data", "report", "gate", "fetch-base-model"):
        assert "required_accelerator" not in tasks[step]["inputs"].get("parameters", {})


def test_kfp_target_is_plain_kubernetes(templates) -> None:
    """Open-source KFP: no gcpc launcher, no Vertex-only placeholder, the GPU as nvidia.com/gpu
    on an L4 node pool (KFP uses the accelerator type verbatim as the resource name)."""
    spec, platform = documents(templates["kfp"])
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    text = json.dumps(spec)
    assert "custom_job" not in text and "{{$.pipeline_google_cloud" not in text
    assert "NVIDIA_L4" not in json.dumps(spec["deploymentSpec"])
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in GPU_STEPS:
        ex = f"exec-{step}"
        acc = executors[ex]["container"]["resources"]["accelerator"]
        assert acc["resourceType"] == "nvidia.com/gpu" and str(acc["resourceCount"]) == "1"
        assert k8s[ex]["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator":
                                                     "nvidia-l4"}
        assert k8s[ex]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "accelerator" not in executors["exec-prepare-data"]["container"].get("resources", {})


def test_pd_balanced_is_refused_at_compile_time() -> None:
    with pytest.raises(InputError, match="boot_disk_type"):
        resolve(settings={"boot_disk_type": "pd-balanced"}, env={})


def test_stamp_records_settings_source_and_commit(templates) -> None:
    stamp = compiler.read_stamp(templates["kfp"])
    assert stamp is not None
    assert stamp["settings"]["target"] == "kfp" and stamp["settings"]["image"] == IMAGE
    assert stamp["source"] == compiler.source_digest()
    assert stamp["commit"]
    assert compiler.stale_reasons(stamp, {"target": "kfp", "image": IMAGE}) == []


def test_stale_reasons_name_what_changed(templates, monkeypatch: pytest.MonkeyPatch) -> None:
    stamp = compiler.read_stamp(templates["vertex"])
    reasons = compiler.stale_reasons(stamp, {"image": "other/img:1", "target": "vertex"})
    assert reasons == [f"image is {IMAGE!r} in it, 'other/img:1' wanted"]
    monkeypatch.setattr(compiler, "source_digest", lambda root=None: "0" * 16)
    assert "pipeline code changed" in compiler.stale_reasons(stamp, {})[0]
    assert "no build stamp" in compiler.stale_reasons(None, {})[0]


def test_source_digest_follows_the_code(tmp_path: Path) -> None:
    for pkg in ("components", "pipelines"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "a.py").write_text("x = 1\n")
    first = compiler.source_digest(tmp_path)
    (tmp_path / "pipelines" / "notes.md").write_text("docs do not shape the template")
    assert compiler.source_digest(tmp_path) == first
    (tmp_path / "components" / "a.py").write_text("x = 2\n")
    assert compiler.source_digest(tmp_path) != first
