"""The registry upload: the merged model, with a serving container that serves it, the run's
lineage on it; and, in the compiled pipeline, export -> register [-> deploy] behind the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.common.serving import HEALTH_ROUTE, PREDICT_ROUTE, SERVING_PORT, VLLM_SERVING_IMAGE
from components.register.register import lineage, register_model

TRAINING_IMAGE = "us-central1-docker.pkg.dev/my-proj/dolly-lora/trainer@sha256:" + "ab" * 32
MERGED = "gs://bucket/pipelines/123/dolly-lora-20261128/export_456/merged"
INFO = {
    "pipeline_job": "dolly-lora-20261128-0900", "base_model": "google/gemma-3-1b-it",
    "split_hash": "3f2a9c1d", "eval_metric": "loss", "eval_improvement_low": 0.0123,
    "eval_improvement_high": 0.0456, "eval_rows": 751, "export_max_abs_diff": 0.04,
}


def upload(tmp_path: Path, info: dict[str, Any] = INFO) -> dict[str, Any]:
    return register_model(
        model_uri=MERGED, info=info, project="my-proj", location="us-central1",
        display_name="dolly-lora-gemma3-1b", serving_image=VLLM_SERVING_IMAGE,
        max_model_len=32768, record_path=str(tmp_path / "record.json"),
    )


def test_upload_request_serves_the_merged_model_with_vllm(registry, tmp_path) -> None:
    from google.cloud import aiplatform_v1 as v1

    record = upload(tmp_path)
    (req,) = registry.requests("UploadModel")
    assert isinstance(req, v1.UploadModelRequest)
    assert req.parent == "projects/my-proj/locations/us-central1"
    model = req.model
    assert model.artifact_uri == MERGED
    spec = model.container_spec
    assert spec.image_uri == VLLM_SERVING_IMAGE != TRAINING_IMAGE
    assert spec.predict_route == PREDICT_ROUTE and spec.health_route == HEALTH_ROUTE
    assert [p.container_port for p in spec.ports] == [SERVING_PORT]
    args = list(spec.args)
    assert args[:3] == ["python", "-m", "vllm.entrypoints.api_server"]
    for arg in ("--model=$(AIP_STORAGE_URI)", f"--port={SERVING_PORT}", "--max-model-len=32768",
                "--dtype=bfloat16", "--tensor-parallel-size=1"):
        assert arg in args
    assert spec.shared_memory_size_mb == 16384
    assert {e.name: e.value for e in spec.env}["MODEL_ID"] == "google/gemma-3-1b-it"
    assert record["resourceName"] == "projects/my-proj/locations/us-central1/models/100"
    assert record["version_name"].endswith("/models/100@1")
    assert json.loads((tmp_path / "record.json").read_text()) == record


def test_upload_carries_the_lineage(registry, tmp_path) -> None:
    upload(tmp_path)
    model = registry.requests("UploadModel")[0].model
    assert dict(model.labels) == {
        "source": "dolly-lora", "pipeline-job": "dolly-lora-20261128-0900",
        "base-model": "google-gemma-3-1b-it", "split-hash": "3f2a9c1d", "eval-metric": "loss",
        "eval-low": "0-0123", "eval-high": "0-0456",
    }
    text = model.version_description
    for part in ("google/gemma-3-1b-it", "dolly-lora-20261128-0900", "3f2a9c1d",
                 "[0.0123, 0.0456]", "751 test rows"):
        assert part in text


def test_registering_the_newest_versions_model_again_is_a_no_op(registry, tmp_path,
                                                                 capsys) -> None:
    from components.register.register import content_hash

    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "model.safetensors").write_bytes(b"weights-1")
    (merged / "export.json").write_text('{"seconds": 1.5}')
    info = {**INFO, "content_hash": content_hash(str(merged))}
    first = upload(tmp_path, info)
    assert registry.requests("UploadModel")[0].model.labels["content-hash"] == \
        info["content_hash"]
    (merged / "export.json").write_text('{"seconds": 2.5}')  # timings only: the same model
    again = upload(tmp_path, {**info, "content_hash": content_hash(str(merged))})
    assert len(registry.requests("UploadModel")) == 1, "identical: nothing uploaded"
    assert again["unchanged"] and again["version_name"] == first["version_name"]
    assert "identical to " + first["version_name"] in capsys.readouterr().out
    (merged / "model.safetensors").write_bytes(b"weights-2")  # a new adapter, merged
    changed = upload(tmp_path, {**info, "content_hash": content_hash(str(merged))})
    assert len(registry.requests("UploadModel")) == 2 and not changed["unchanged"]
    assert changed["version_name"] == first["resourceName"] + "@2"
    assert not upload(tmp_path, {**info, "content_hash": ""})["unchanged"], \
        "no hash (no folder): always a new version"


def test_a_second_upload_is_a_new_version_of_the_same_model(registry, tmp_path) -> None:
    first = upload(tmp_path)
    second = upload(tmp_path)
    reqs = registry.requests("UploadModel")
    assert reqs[0].parent_model == "" and reqs[1].parent_model == first["resourceName"]
    assert second["version_name"] == first["resourceName"] + "@2"
    assert registry.methods() == ["ListModels", "UploadModel", "GetModel",
                                  "ListModels", "UploadModel", "GetModel"]


def test_lineage_comes_from_the_inputs_and_the_export_file(tmp_path) -> None:
    (tmp_path / "export.json").write_text(json.dumps({"base_model": "embedded://tiny-gemma3",
                                                      "export_max_abs_diff": 0.01}))
    info = lineage({}, str(tmp_path),
                   {"headline_metric": "loss", "improvement_low": 0.1, "improvement_high": 0.2,
                    "rows": 20.0}, {"split_hash": "abc"}, "job-1")
    assert info["base_model"] == "embedded://tiny-gemma3" and info["split_hash"] == "abc"
    assert (info["eval_improvement_low"], info["eval_improvement_high"]) == (0.1, 0.2)
    assert info["export_max_abs_diff"] == 0.01 and info["pipeline_job"] == "job-1"


def test_local_register_records_the_serving_container(tmp_path) -> None:
    out = tmp_path / "rec.json"
    rec = register_model(model_uri="/runs/x/export/merged", info=INFO, project="", location="",
                         display_name="d", serving_image=VLLM_SERVING_IMAGE, max_model_len=4096,
                         record_path=str(out))
    assert rec["registry"] == "local" and rec["pipeline_job"] == INFO["pipeline_job"]
    assert rec["serving"]["serving_container_image_uri"] == VLLM_SERVING_IMAGE
    assert "--max-model-len=4096" in rec["serving"]["serving_container_args"]
    assert json.loads(out.read_text()) == rec
    assert "--tensor-parallel-size=1" in rec["serving"]["serving_container_args"]


def test_the_serving_container_splits_the_model_over_the_serving_machines_gpus(tmp_path) -> None:
    """12B bf16 is served on 2 L4s: vLLM must be told, or it loads the model onto one."""
    rec = register_model(model_uri="/m", info=INFO, project="", location="", display_name="d",
                         serving_image=VLLM_SERVING_IMAGE, max_model_len=4096,
                         record_path=str(tmp_path / "r.json"), serving_gpus=2)
    args = rec["serving"]["serving_container_args"]
    assert "--tensor-parallel-size=2" in args and "--tensor-parallel-size=1" not in args


# --- the compiled pipeline ---------------------------------------------------------------

@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict[str, Any]:
    import yaml

    from pipelines.compiler import compile_pipeline
    from pipelines.settings import CompileSettings

    out = compile_pipeline(tmp_path_factory.mktemp("tpl") / "t.yaml",
                           CompileSettings(image=TRAINING_IMAGE))
    return yaml.safe_load(out.read_text())


def gated(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["components"]["comp-condition-1"]["dag"]["tasks"]


def test_registry_upload_names_a_serving_image_that_is_not_the_training_image(spec) -> None:
    register = gated(spec)["register-model"]["inputs"]["parameters"]["serving_image"]
    channel = register["componentInputParameter"]  # the pipeline's serving_image parameter
    top = spec["root"]["dag"]["tasks"]["condition-1"]["inputs"]["parameters"][channel]
    default = spec["root"]["inputDefinitions"]["parameters"][top["componentInputParameter"]]
    assert default["defaultValue"] == VLLM_SERVING_IMAGE
    assert default["defaultValue"] != TRAINING_IMAGE
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
              if "container" in e}
    assert VLLM_SERVING_IMAGE not in images, "no step runs in the serving image"
    assert spec["root"]["inputDefinitions"]["parameters"]["serving_max_model_len"][
        "defaultValue"] == 32768


def test_register_uploads_the_export_steps_merged_model_as_a_vertex_model(spec) -> None:
    tasks = gated(spec)
    register = tasks["register-model"]
    assert register["dependentTasks"] == ["export"]
    model = register["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert model == {"outputArtifactKey": "merged", "producerTask": "export"}
    out = spec["components"]["comp-register-model"]["outputDefinitions"]["artifacts"]
    assert out["registered_model"]["artifactType"]["schemaTitle"] == "google.VertexModel"
    export_in = tasks["export"]["inputs"]["artifacts"]
    assert set(export_in) == {"base", "model", "test"}


def test_deploy_is_opt_in_after_register(spec) -> None:
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["deploy"]["defaultValue"] is False
    assert params["deploy"]["parameterType"] == "BOOLEAN"
    cond = gated(spec)["condition-2"]
    assert cond["triggerPolicy"]["condition"] == \
        "inputs.parameter_values['pipelinechannel--deploy'] == true"
    deploy = spec["components"]["comp-condition-2"]["dag"]["tasks"]["deploy-model"]
    args = deploy["inputs"]["parameters"]
    assert args["machine_type"]["runtimeValue"]["constant"] == "g2-standard-8"
    assert args["accelerator_type"]["runtimeValue"]["constant"] == "NVIDIA_L4"
    assert args["project"]["runtimeValue"]["constant"] == "{{$.pipeline_google_cloud_project_id}}"
    # The TTL undeploy run uses the pipeline's own image; 8 hours unless the run says otherwise.
    assert args["image"]["runtimeValue"]["constant"] == TRAINING_IMAGE
    assert args["deploy_ttl_hours"] == {"componentInputParameter": "pipelinechannel--deploy_ttl_hours"}
    assert spec["root"]["inputDefinitions"]["parameters"]["deploy_ttl_hours"]["defaultValue"] == 8


# --- the deploy step ---------------------------------------------------------------------

def deploy_step(tmp_path: Path, project: str, registered: dict[str, Any]) -> dict[str, Any]:
    from components.deploy.deploy import run_deploy

    return run_deploy(registered=registered, project=project, location="us-central1" if project
                      else "", endpoint="", machine_type="g2-standard-8",
                      accelerator_type="NVIDIA_L4", accelerator_count=1, min_replicas=1,
                      max_replicas=2, record_path=str(tmp_path / "deployment.json"))


def test_deploy_step_deploys_the_version_register_uploaded(registry, tmp_path) -> None:
    record = upload(tmp_path)
    done = deploy_step(tmp_path, "my-proj", {"version_name": record["version_name"]})
    (req,) = registry.requests("DeployModel")
    assert req.deployed_model.model == record["version_name"]
    assert req.deployed_model.dedicated_resources.max_replica_count == 2
    assert done["created_endpoint"] and done["serving_image"] == VLLM_SERVING_IMAGE
    assert json.loads((tmp_path / "deployment.json").read_text()) == done


def test_deploy_step_without_a_project_records_what_it_would_send(registry, tmp_path) -> None:
    done = deploy_step(tmp_path, "", {"registry": "local"})
    assert done["deployed"] is False and registry.calls == []
    methods = [r["method"].rsplit(".", 1)[-1] for r in done["requests"]]
    assert methods == ["CreateEndpoint", "DeployModel"]


def test_deploy_step_plans_its_ttl_schedule_in_the_steps_image(registry, tmp_path) -> None:
    from components.deploy.deploy import run_deploy

    done = run_deploy(registered={"registry": "local"}, project="", location="", endpoint="",
                      machine_type="g2-standard-8", accelerator_type="NVIDIA_L4",
                      accelerator_count=1, min_replicas=1, max_replicas=1,
                      record_path=str(tmp_path / "deployment.json"), ttl_hours=8,
                      image="img@sha256:" + "e" * 64)
    methods = [r["method"].rsplit(".", 1)[-1] for r in done["requests"]]
    assert methods == ["CreateEndpoint", "CreateSchedule", "DeployModel"]
    schedule = done["requests"][1]["request"]["schedule"]
    assert schedule["maxRunCount"] == "1"
    job = schedule["createPipelineJobRequest"]["pipelineJob"]
    [executor] = job["pipelineSpec"]["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == "img@sha256:" + "e" * 64
    assert job["runtimeConfig"]["parameterValues"]["delete_endpoint"] is True
