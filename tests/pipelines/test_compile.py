"""Compile the pipeline and assert its spec: DAG, machines, defaults, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from compile import compile_pipeline
from components.common.config import parameter_defaults


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    path = compile_pipeline(tmp_path_factory.mktemp("c") / "p.yaml")
    return yaml.safe_load(path.read_text())


def test_yaml_parses_as_pipeline_spec(spec):
    msg = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert msg.pipeline_info.name == "dolly-lora"
    assert set(msg.root.dag.tasks) == {"prepare-data", "fine-tune", "evaluate", "inference",
                                       "condition-1", "report"}
    gated = msg.components["comp-condition-1"].dag.tasks
    assert set(gated) == {"register-model"}


def test_dag_edges(spec):
    tasks = spec["root"]["dag"]["tasks"]

    def upstream(task: str) -> set[str]:
        arts = tasks[task]["inputs"].get("artifacts", {})
        return {a["taskOutputArtifact"]["producerTask"] for a in arts.values()}

    assert upstream("prepare-data") == set()
    assert upstream("fine-tune") == {"prepare-data"}
    assert upstream("evaluate") == {"prepare-data", "fine-tune"}
    assert upstream("inference") == {"prepare-data", "fine-tune"}
    assert upstream("report") == {"prepare-data", "fine-tune", "evaluate", "inference"}
    ft = tasks["fine-tune"]["inputs"]["artifacts"]
    assert ft["train"]["taskOutputArtifact"]["outputArtifactKey"] == "train"
    assert tasks["evaluate"]["inputs"]["artifacts"]["test"]["taskOutputArtifact"][
        "outputArtifactKey"] == "test"


def _resources(spec: dict, task: str) -> dict:
    executor = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"].replace(
        "comp-", "exec-")
    return spec["deploymentSpec"]["executors"][executor]["container"].get("resources", {})


@pytest.mark.parametrize("task", ["evaluate", "inference"])
def test_gpu_tasks_request_one_l4_on_g2_standard_8(spec, task):
    res = _resources(spec, task)
    assert res["accelerator"]["resourceType"] == "NVIDIA_L4"
    assert str(res["accelerator"]["resourceCount"]) == "1"
    assert res["resourceCpuLimit"] == "8" and res["resourceMemoryLimit"] == "32G"


def test_fine_tune_is_an_l4_custom_job(spec):
    params = spec["components"]["comp-fine-tune"]["inputDefinitions"]["parameters"]
    machine = params["worker_pool_specs"]["defaultValue"][0]["machine_spec"]
    assert machine == {"machine_type": "g2-standard-8", "accelerator_type": "NVIDIA_L4",
                       "accelerator_count": 1}


def test_prepare_stays_small(spec):
    res = _resources(spec, "prepare-data")
    assert "accelerator" not in res
    assert float(res["resourceCpuLimit"]) <= 4


def test_parameter_defaults_are_the_real_job(spec):
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(parameter_defaults())
    for name, default in parameter_defaults().items():
        assert params[name]["defaultValue"] == default, name
    assert params["base_model"]["defaultValue"] == "google/gemma-3-1b-it"


def test_components_never_install_at_runtime(spec):
    ours = [e for name, e in spec["deploymentSpec"]["executors"].items()
            if name != "exec-fine-tune"]  # that one is gcpc's custom-job launcher
    for executor in ours:
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command
        assert executor["container"]["image"] == ours[0]["container"]["image"]
    params = spec["components"]["comp-fine-tune"]["inputDefinitions"]["parameters"]
    job = params["worker_pool_specs"]["defaultValue"][0]["container_spec"]
    assert job["image_uri"] == ours[0]["container"]["image"]
    assert "pip install" not in " ".join(job["command"] + job.get("args", []))


def test_compiling_twice_is_byte_identical(tmp_path: Path):
    a = compile_pipeline(tmp_path / "a.yaml").read_bytes()
    b = compile_pipeline(tmp_path / "b.yaml").read_bytes()
    assert a == b


def test_evaluate_exposes_the_gate_output(spec):
    """The registry gate (dsl.If) reads evaluate's typed bool (the bootstrap decision)."""
    comp = spec["components"]["comp-evaluate"]["outputDefinitions"]
    assert comp["parameters"]["Output"]["parameterType"] == "BOOLEAN"
    assert {"metrics", "generations"} <= set(comp["artifacts"])
    gate = spec["root"]["dag"]["tasks"]["condition-1"]["triggerPolicy"]["condition"]
    assert "evaluate-Output" in gate
    report = spec["components"]["comp-report"]["outputDefinitions"]["artifacts"]
    assert report["html"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert report["markdown"]["artifactType"]["schemaTitle"] == "system.Markdown"
