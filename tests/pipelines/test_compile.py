"""Compile the pipeline and assert its spec: DAG, machines, defaults, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components.common.config import parameter_defaults
from pipelines.compiler import compile_pipeline


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    path = compile_pipeline(tmp_path_factory.mktemp("c") / "p.yaml")
    return yaml.safe_load(path.read_text())


def test_yaml_parses_as_pipeline_spec(spec):
    msg = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert msg.pipeline_info.name == "dolly-lora"
    assert set(msg.root.dag.tasks) == {"fetch-base-model", "data-key", "prepare-data", "fine-tune",
                                       "evaluate", "gate", "inference", "condition-1", "report"}
    gated = msg.components["comp-condition-1"].dag.tasks
    assert set(gated) == {"export", "register-model", "condition-2"}  # condition-2: deploy


def test_dag_edges(spec):
    tasks = spec["root"]["dag"]["tasks"]

    def upstream(task: str) -> set[str]:
        arts = tasks[task]["inputs"].get("artifacts", {})
        return {a["taskOutputArtifact"]["producerTask"] for a in arts.values()}

    assert upstream("fetch-base-model") == set()
    # the base model is fetched once; every later step that loads it reads that artifact
    assert upstream("prepare-data") == {"fetch-base-model"}
    assert upstream("fine-tune") == {"fetch-base-model", "prepare-data"}
    assert upstream("evaluate") == {"fetch-base-model", "prepare-data", "fine-tune"}
    assert upstream("gate") == {"evaluate"}
    assert upstream("inference") == {"fetch-base-model", "prepare-data", "fine-tune"}
    assert upstream("report") == {"prepare-data", "fine-tune", "evaluate", "inference"}
    for step in ("prepare-data", "fine-tune", "evaluate", "inference"):
        base = tasks[step]["inputs"]["artifacts"]["base"]["taskOutputArtifact"]
        assert base == {"producerTask": "fetch-base-model", "outputArtifactKey": "model"}
    # only the fetch step reads the HF token
    for name, task in tasks.items():
        params = task.get("inputs", {}).get("parameters", {})
        assert ("hf_token_secret" in params) == (name == "fetch-base-model"), name
    ft = tasks["fine-tune"]["inputs"]["artifacts"]
    assert ft["train"]["taskOutputArtifact"]["outputArtifactKey"] == "train"
    assert tasks["evaluate"]["inputs"]["artifacts"]["test"]["taskOutputArtifact"][
        "outputArtifactKey"] == "test"


def _resources(spec: dict, task: str) -> dict:
    executor = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"].replace(
        "comp-", "exec-")
    return spec["deploymentSpec"]["executors"][executor]["container"].get("resources", {})


@pytest.mark.parametrize("task", ["fine-tune", "evaluate", "inference"])
def test_gpu_steps_are_l4_custom_jobs(spec, task):
    params = spec["components"][f"comp-{task}"]["inputDefinitions"]["parameters"]
    machine = params["worker_pool_specs"]["defaultValue"][0]["machine_spec"]
    assert machine == {"machine_type": "g2-standard-8", "accelerator_type": "NVIDIA_L4",
                       "accelerator_count": 1}
    assert "accelerator" not in _resources(spec, task)  # the launcher itself needs no GPU


@pytest.mark.parametrize("task", ["fetch-base-model", "prepare-data", "gate", "report"])
def test_cpu_steps_stay_small(spec, task):
    res = _resources(spec, task)
    assert "accelerator" not in res
    assert float(res["resourceCpuLimit"]) <= 4


def test_parameter_defaults_are_the_real_job(spec):
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(parameter_defaults())
    for name, default in parameter_defaults().items():
        assert params[name]["defaultValue"] == default, name
    assert params["base_model"]["defaultValue"] == "google/gemma-3-1b-it"


def test_components_never_install_at_runtime(spec):
    launchers = {"exec-fine-tune", "exec-evaluate", "exec-inference"}  # gcpc's custom-job ones
    ours = [e for name, e in spec["deploymentSpec"]["executors"].items() if name not in launchers]
    assert len(ours) == 8  # + export, deploy-model, data-key
    for executor in ours:
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command
        assert executor["container"]["image"] == ours[0]["container"]["image"]
    for step in ("fine-tune", "evaluate", "inference"):
        params = spec["components"][f"comp-{step}"]["inputDefinitions"]["parameters"]
        job = params["worker_pool_specs"]["defaultValue"][0]["container_spec"]
        assert job["image_uri"] == ours[0]["container"]["image"]
        assert "pip install" not in " ".join(job["command"] + job.get("args", []))


def test_compiling_twice_is_byte_identical(tmp_path: Path):
    a = compile_pipeline(tmp_path / "a.yaml").read_bytes()
    b = compile_pipeline(tmp_path / "b.yaml").read_bytes()
    assert a == b


def test_the_gate_step_decides_and_publishes_metrics(spec):
    """The registry gate (dsl.If) reads the plain `gate` task's typed bool, not the evaluate
    custom job's (a custom job's outputs do not reach the pipeline)."""
    comp = spec["components"]["comp-gate"]["outputDefinitions"]
    assert comp["parameters"]["Output"]["parameterType"] == "BOOLEAN"
    assert comp["artifacts"]["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    ev = spec["components"]["comp-evaluate"]["outputDefinitions"]
    assert set(ev["artifacts"]) == {"generations"}
    assert set(ev.get("parameters", {})) == {"gcp_resources"}  # the launcher's, no verdict
    gate = spec["root"]["dag"]["tasks"]["condition-1"]["triggerPolicy"]["condition"]
    assert "gate-Output" in gate
    report = spec["components"]["comp-report"]["outputDefinitions"]["artifacts"]
    assert report["html"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert report["markdown"]["artifactType"]["schemaTitle"] == "system.Markdown"
