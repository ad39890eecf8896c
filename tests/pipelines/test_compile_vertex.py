"""Compiling for Vertex: image from one setting, the L4 custom job, the gate, no secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.common.errors import InputError
from pipelines import compiler
from pipelines.machines import TrainingJobSpec
from pipelines.settings import CompileSettings, resolve

DIGEST_IMAGE = "europe-west4-docker.pkg.dev/p-1/repo/trainer@sha256:" + "0f" * 32


def compiled(tmp_path: Path, argv: list[str], name: str = "p.yaml") -> dict[str, Any]:
    out = tmp_path / name
    compiler.main(["--out", str(out), *argv])
    return next(yaml.safe_load_all(out.read_text()))


def worker_pool(spec: dict[str, Any]) -> dict[str, Any]:
    params = spec["components"]["comp-fine-tune"]["inputDefinitions"]["parameters"]
    return params["worker_pool_specs"]["defaultValue"][0]


def images(spec: dict[str, Any]) -> set[str]:
    return {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DOLLY_LORA_IMAGE", "DOLLY_LORA_MACHINE_TYPE", "DOLLY_LORA_CAPACITY",
                 "DOLLY_LORA_ACCELERATOR_COUNT", "DOLLY_LORA_TRAIN_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def test_default_compile_trains_on_one_l4(tmp_path: Path) -> None:
    spec = compiled(tmp_path, [])
    pool = worker_pool(spec)
    assert pool["machine_spec"] == {"machine_type": "g2-standard-8",
                                    "accelerator_type": "NVIDIA_L4", "accelerator_count": 1}
    assert pool["disk_spec"] == {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": 200}
    params = spec["components"]["comp-fine-tune"]["inputDefinitions"]["parameters"]
    # its own deadline from the estimate (3 x 6.4 min of training + 4 min start-up = 23 min):
    # the 30 min floor, not Vertex's 7 days or the old 24 h
    assert params["timeout"]["defaultValue"] == "1800s"
    assert params["strategy"]["defaultValue"] == "STANDARD"
    execs = spec["deploymentSpec"]["executors"]
    assert "accelerator" not in execs["exec-prepare-data"]["container"].get("resources", {})
    # the GPU steps' launchers themselves ask for no GPU: their custom jobs do
    for step in ("fine-tune", "evaluate", "inference"):
        container = execs[f"exec-{step}"]["container"]
        assert "custom_job.launcher" in " ".join(container["command"] + container.get("args", []))
        assert "accelerator" not in container.get("resources", {})


def test_image_from_flag_env_and_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_image = "us-docker.pkg.dev/env/repo/img:v1"
    monkeypatch.setenv("DOLLY_LORA_IMAGE", env_image)
    from_env = compiled(tmp_path, [], "env.yaml")
    assert worker_pool(from_env)["container_spec"]["image_uri"] == env_image
    spec = compiled(tmp_path, ["--image", DIGEST_IMAGE], "flag.yaml")  # the flag wins
    own = images(spec) - {i for i in images(spec) if "google-cloud-pipeline-components" in i}
    assert own == {DIGEST_IMAGE}
    assert worker_pool(spec)["container_spec"]["image_uri"] == DIGEST_IMAGE
    assert f"image={DIGEST_IMAGE}" in (tmp_path / "flag.yaml").read_text().splitlines()[3]
    assert CompileSettings(image=DIGEST_IMAGE).image_digest == "sha256:" + "0f" * 32


def test_recompile_is_byte_identical(tmp_path: Path) -> None:
    compiled(tmp_path, ["--capacity", "SPOT"], "a.yaml")
    compiled(tmp_path, ["--capacity", "SPOT"], "b.yaml")
    assert (tmp_path / "a.yaml").read_bytes() == (tmp_path / "b.yaml").read_bytes()


def test_spot_and_flex_start(tmp_path: Path) -> None:
    spot = compiled(tmp_path, ["--capacity", "SPOT", "--timeout", "21600s"], "s.yaml")
    params = spot["components"]["comp-fine-tune"]["inputDefinitions"]["parameters"]
    assert params["strategy"]["defaultValue"] == "SPOT"
    assert params["timeout"]["defaultValue"] == "21600s"
    flex = compiled(tmp_path, ["--capacity", "FLEX_START", "--max-wait-duration", "7200s"],
                    "f.yaml")
    params = flex["components"]["comp-fine-tune"]["inputDefinitions"]["parameters"]
    assert params["strategy"]["defaultValue"] == "FLEX_START"
    assert params["max_wait_duration"]["defaultValue"] == "7200s"


def test_bigger_machine(tmp_path: Path) -> None:
    spec = compiled(tmp_path, ["--machine-type", "g2-standard-24", "--accelerator-count", "2",
                               "--boot-disk-gb", "500"])
    pool = worker_pool(spec)
    assert pool["machine_spec"]["machine_type"] == "g2-standard-24"
    assert pool["machine_spec"]["accelerator_count"] == 2
    assert pool["disk_spec"]["boot_disk_size_gb"] == 500


@pytest.mark.parametrize(("overrides", "message"), [
    ({"machine_type": "g2-standard-24"}, "comes with 2 x NVIDIA_L4"),
    ({"machine_type": "g2-standard-7"}, "unknown G2 machine type"),
    ({"timeout": "6h"}, "not a duration"),
    ({"image": "Not An Image"}, "not an image reference"),
    ({"capacity": "CHEAP"}, "capacity"),
])
def test_bad_settings(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        resolve(settings=overrides, env={})


def test_settings_env_and_override_order() -> None:
    env = {"DOLLY_LORA_MACHINE_TYPE": "g2-standard-12", "DOLLY_LORA_CAPACITY": "SPOT"}
    s = resolve(settings={"capacity": "FLEX_START"}, env=env).settings
    assert s.training.machine_type == "g2-standard-12"
    assert s.training.capacity == "FLEX_START"
    assert resolve(env={}).settings.training == TrainingJobSpec()


def test_register_gets_vertex_placeholders_as_arguments(tmp_path: Path) -> None:
    spec = compiled(tmp_path, [])
    task = spec["components"]["comp-condition-1"]["dag"]["tasks"]["register-model"]
    args = task["inputs"]["parameters"]
    assert args["project"]["runtimeValue"]["constant"] == "{{$.pipeline_google_cloud_project_id}}"
    assert args["location"]["runtimeValue"]["constant"] == "{{$.pipeline_google_cloud_location}}"
    # never inside the shipped source, where the local runner would try to resolve it
    command = str(spec["deploymentSpec"]["executors"]["exec-register-model"]["container"])
    assert "pipeline_google_cloud" not in command


def test_local_target_is_plain_and_gated(tmp_path: Path) -> None:
    spec = compiled(tmp_path, ["--target", "local"])
    execs = spec["deploymentSpec"]["executors"]
    assert "worker_pool_specs" not in str(spec["components"]["comp-fine-tune"])
    assert execs["exec-fine-tune"]["container"]["resources"]["accelerator"]["count"] == "1"
    gate = spec["root"]["dag"]["tasks"]["condition-1"]
    assert gate["taskInfo"]["name"] == "tuned-beats-base"
    assert "gate-Output" in gate["triggerPolicy"]["condition"]
    assert "register-model" in spec["components"]["comp-condition-1"]["dag"]["tasks"]


def test_secret_parameters_hold_names_only(tmp_path: Path) -> None:
    spec = compiled(tmp_path, [])
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["hf_token_secret"]["defaultValue"] == ""
    assert params["wandb_api_key_secret"]["defaultValue"] == ""
    from components.common.config import PipelineConfig, build

    with pytest.raises(InputError, match="Secret Manager resource name"):
        build(PipelineConfig, {"wandb_api_key_secret": "0123456789abcdef0123456789abcdef"})
