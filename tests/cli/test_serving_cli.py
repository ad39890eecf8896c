"""`submit deploy / undeploy / predict / serve`: the requests they send (real aiplatform_v1
clients, calls captured by tests.serving_fakes), --dry-run, and bad input as one line, exit 2."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.submit import app
from components.common.serving import VLLM_SERVING_IMAGE
from tests.serving_fakes import VLLM_ANSWER

LOC = ["--project", "my-proj", "--region", "us-central1", "--pipeline-root", "gs://my-bucket/pipelines"]
IMAGE = "us-central1-docker.pkg.dev/my-proj/dolly-lora/trainer@sha256:" + "cd" * 32
MODEL = "projects/my-proj/locations/us-central1/models/42"
ENDPOINT = "projects/my-proj/locations/us-central1/endpoints/7"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DOLLY_LORA_", "GOOGLE_CLOUD_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DOLLY_LORA_IMAGE", IMAGE)  # the TTL run's image (submit deploy --image)
    monkeypatch.chdir(tmp_path)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, [*LOC, *args])


def one_line_error(result: Any, after_progress: bool = False) -> str:
    """The error, one line; bad input (exit 2) prints nothing else, a failed deploy may have
    printed its progress lines before."""
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert after_progress or len(lines) == 1, result.output
    return errors[0]


def test_dry_run_prints_endpoint_and_deploy_requests_on_an_l4(registry) -> None:
    result = invoke("deploy", "42@3", "--dry-run")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (create, ttl, dep) = out["requests"]
    assert ttl["method"].endswith("ScheduleService.CreateSchedule")
    assert create["method"].endswith("EndpointService.CreateEndpoint")
    assert create["request"]["parent"] == "projects/my-proj/locations/us-central1"
    assert dep["method"].endswith("EndpointService.DeployModel")
    deployed = dep["request"]["deployedModel"]
    assert deployed["model"] == f"{MODEL}@3"
    assert deployed["dedicatedResources"]["machineSpec"] == {
        "machineType": "g2-standard-8", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1}
    assert deployed["dedicatedResources"]["minReplicaCount"] == 1
    assert dep["request"]["trafficSplit"] == {"0": 100}
    assert out["registered_serving_container"]["serving_container_image_uri"] == \
        VLLM_SERVING_IMAGE
    assert out["hourly_usd_while_deployed"] == 0.85
    assert out["most_usd_until_ttl"] == pytest.approx(8 * 0.85, abs=0.05)  # the default 8 h TTL
    assert set(registry.methods()) == {"ListEndpoints"}, "a dry run only reads"


def test_deploy_creates_an_endpoint_and_deploys(registry) -> None:
    registry.add_model(f"{MODEL}@3")
    result = invoke("deploy", "42@3", "--max-replicas", "2")
    assert result.exit_code == 0, result.output
    assert registry.methods() == ["GetModel", "ListEndpoints", "ListEndpoints", "CreateEndpoint",
                                  "CreateSchedule", "GetEndpoint", "UpdateEndpoint",
                                  "DeployModel"]
    req = registry.requests("DeployModel")[0]
    assert req.deployed_model.dedicated_resources.max_replica_count == 2
    assert req.deployed_model.dedicated_resources.machine_spec.machine_type == "g2-standard-8"
    record = json.loads(result.stdout)
    assert record["created_endpoint"] and record["undeployed"] == []
    assert "$0.85/h" in result.stderr


def test_the_previous_version_serves_until_the_new_one_is_up(registry) -> None:
    registry.add_model(f"{MODEL}@4")
    registry.add_endpoint(ENDPOINT, deployed=[("11", f"{MODEL}@3")])
    result = invoke("deploy", f"{MODEL}@4", "--endpoint", "7")
    assert result.exit_code == 0, result.output
    # Deploy first (all traffic to the new one once healthy), only then undeploy the old one.
    assert registry.methods() == ["GetModel", "GetEndpoint", "CreateSchedule", "GetEndpoint",
                                  "UpdateEndpoint", "DeployModel", "UndeployModel"]
    assert dict(registry.requests("DeployModel")[0].traffic_split) == {"0": 100}
    assert registry.requests("UndeployModel")[0].deployed_model_id == "11"
    assert [d.model_version_id for d in registry.endpoints[ENDPOINT].deployed_models] == ["4"]


def test_a_failed_deploy_on_an_existing_endpoint_leaves_it_serving(registry) -> None:
    registry.add_model(f"{MODEL}@4")
    registry.add_endpoint(ENDPOINT, deployed=[("11", f"{MODEL}@3")])
    registry.fail_deploy = RuntimeError("container never became healthy")
    result = invoke("deploy", "42@4", "--endpoint", ENDPOINT)
    assert result.exit_code == 1
    assert "still serves what it served before" in one_line_error(result, after_progress=True)
    assert "UndeployModel" not in registry.methods() and ENDPOINT in registry.endpoints


def test_an_endpoint_created_for_a_failed_deploy_is_deleted(registry) -> None:
    from google.api_core import exceptions

    registry.add_model(f"{MODEL}@3")
    registry.fail_deploy = exceptions.ResourceExhausted("quota NVIDIA_L4 exceeded")
    result = invoke("deploy", "42@3")
    assert result.exit_code == 1
    line = one_line_error(result, after_progress=True)
    assert "quota NVIDIA_L4 exceeded" in line and "deleted again" in line
    created = registry.requests("CreateSchedule")[0].schedule.create_pipeline_job_request \
        .pipeline_job.runtime_config.parameter_values["endpoint"]
    assert registry.methods()[-3:] == ["DeployModel", "GetEndpoint", "DeleteEndpoint"]
    assert registry.requests("DeleteEndpoint") == [created] and registry.endpoints == {}


def test_a_dry_run_deploy_reuses_this_projects_endpoint(registry) -> None:
    """No --endpoint: the endpoint labelled source=dolly-lora is reused, not a new one made."""
    registry.add_endpoint("projects/my-proj/locations/us-central1/endpoints/5",
                          display_name="someone-elses")
    registry.add_endpoint(ENDPOINT, deployed=[("11", f"{MODEL}@2")],
                          display_name="dolly-lora-endpoint", labels={"source": "dolly-lora"})
    result = invoke("deploy", "42@3", "--dry-run")
    assert result.exit_code == 0, result.output
    requests = json.loads(result.stdout)["requests"]
    assert [r["method"].rsplit(".", 1)[-1] for r in requests] == [
        "CreateSchedule", "DeployModel", "UndeployModel"], "no CreateEndpoint"
    assert requests[1]["request"]["endpoint"] == ENDPOINT
    assert requests[2]["request"] == {"endpoint": ENDPOINT, "deployedModelId": "11"}
    ttl = requests[0]["request"]["schedule"]["createPipelineJobRequest"]["pipelineJob"]
    assert ttl["runtimeConfig"]["parameterValues"]["endpoint"] == ENDPOINT
    assert ttl["runtimeConfig"]["parameterValues"]["delete_endpoint"] is False, \
        "an endpoint this run did not create is never deleted"
    [listed] = registry.requests("ListEndpoints")  # found by its label: one read
    assert listed.filter == 'labels.source="dolly-lora"'
    assert set(registry.methods()) == {"ListEndpoints"}


def test_a_dry_run_without_credentials_still_prints_the_plan(registry, monkeypatch) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(*args: Any, **kwargs: Any) -> Any:
        raise DefaultCredentialsError("no ADC")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    result = invoke("deploy", "42@3", "--dry-run")
    assert result.exit_code == 0, result.output
    methods = [r["method"].rsplit(".", 1)[-1] for r in json.loads(result.stdout)["requests"]]
    assert methods == ["CreateEndpoint", "CreateSchedule", "DeployModel"]
    assert "endpoints were not read" in result.stderr and registry.calls == []


def test_an_endpoint_of_the_display_name_is_reused(registry) -> None:
    registry.add_model(f"{MODEL}@3")
    registry.add_endpoint(ENDPOINT, display_name="dolly-lora-endpoint")  # made by hand: no label
    result = invoke("deploy", "42@3")
    assert result.exit_code == 0, result.output
    assert "CreateEndpoint" not in registry.methods()
    assert registry.requests("DeployModel")[0].endpoint == ENDPOINT
    assert "reusing this project's endpoint" in result.stderr
    assert not json.loads(result.stdout)["created_endpoint"]


def test_the_ttl_is_a_one_run_vertex_schedule_made_before_the_deploy(registry) -> None:
    import datetime as dt

    registry.add_model(f"{MODEL}@3")
    before = dt.datetime.now(dt.UTC)
    result = invoke("deploy", "42@3", "--ttl-hours", "2")
    assert result.exit_code == 0, result.output
    methods = registry.methods()
    assert methods.index("CreateSchedule") < methods.index("DeployModel")
    [request] = registry.requests("CreateSchedule")
    s = request.schedule
    assert request.parent == "projects/my-proj/locations/us-central1"
    assert s.max_run_count == 1 and s.cron == "* * * * *"
    start = s.start_time
    assert before + dt.timedelta(hours=2, seconds=-1) <= start <= \
        dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    job = s.create_pipeline_job_request.pipeline_job
    endpoint = json.loads(result.stdout)["endpoint"]
    assert dict(job.runtime_config.parameter_values) == {
        "project": "my-proj", "location": "us-central1", "endpoint": endpoint,
        "model": f"{MODEL}@3", "delete_endpoint": True}
    assert job.runtime_config.gcs_output_directory == "gs://my-bucket/pipelines/ttl-undeploy"
    [executor] = job.pipeline_spec["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == IMAGE
    assert "def undeploy_after_ttl(" in executor["container"]["command"][-1]
    labels = registry.endpoints[endpoint].labels
    assert labels["ttl-until"] == f"{start:%Y%m%dt%H%Mz}" and labels["source"] == "dolly-lora"


def test_no_ttl_without_an_image_for_its_run(registry, monkeypatch) -> None:
    monkeypatch.delenv("DOLLY_LORA_IMAGE")
    registry.add_model(f"{MODEL}@3")
    result = invoke("deploy", "42@3")
    assert result.exit_code == 2
    assert "needs a gs:// pipeline root and the project's image" in one_line_error(result)
    assert registry.calls == []
    assert invoke("deploy", "42@3", "--ttl-hours", "0").exit_code == 0
    assert "CreateSchedule" not in registry.methods()


def test_the_wait_outlasts_the_deployment_timeout_vertex_applies() -> None:
    from google.cloud import aiplatform_v1 as v1

    from components.common.serving import DEPLOYMENT_TIMEOUT_S, container_spec
    from components.deploy.deploy import deploy_wait_s

    spec = container_spec(VLLM_SERVING_IMAGE, "gs://m", 1024)
    assert spec["serving_container_deployment_timeout"] == DEPLOYMENT_TIMEOUT_S
    registered = v1.Model(container_spec=v1.ModelContainerSpec(
        deployment_timeout={"seconds": DEPLOYMENT_TIMEOUT_S}))
    assert deploy_wait_s(registered) >= DEPLOYMENT_TIMEOUT_S + 600
    old = v1.Model(container_spec=v1.ModelContainerSpec(deployment_timeout={"seconds": 7200}))
    assert deploy_wait_s(old) > 7200, "a version registered with a longer timeout: wait longer"


def test_a_timed_out_deploy_undeploys_what_appeared_then_deletes_its_endpoint(registry) -> None:
    registry.add_model(f"{MODEL}@3")
    registry.fail_after_deploy = TimeoutError("Operation did not complete within 3600 s")
    result = invoke("deploy", "42@3")
    assert result.exit_code == 1, result.output
    line = one_line_error(result, after_progress=True)
    assert "did not complete" in line and "deleted again" in line
    assert registry.methods()[-4:] == ["DeployModel", "GetEndpoint", "UndeployModel",
                                       "DeleteEndpoint"]
    assert registry.endpoints == {}


def test_a_timed_out_deploy_on_a_reused_endpoint_keeps_what_it_served(registry) -> None:
    registry.add_model(f"{MODEL}@4")
    registry.add_endpoint(ENDPOINT, deployed=[("11", f"{MODEL}@3")],
                          display_name="dolly-lora-endpoint", labels={"source": "dolly-lora"})
    registry.fail_after_deploy = TimeoutError("Operation did not complete within 3600 s")
    result = invoke("deploy", "42@4")
    assert result.exit_code == 1
    assert "still serves what it served before" in one_line_error(result, after_progress=True)
    [undeployed] = registry.requests("UndeployModel")
    assert undeployed.deployed_model_id != "11"
    assert [d.id for d in registry.endpoints[ENDPOINT].deployed_models] == ["11"]
    assert "DeleteEndpoint" not in registry.methods()


def test_a_model_version_that_does_not_exist_creates_nothing(registry) -> None:
    registry.add_model(f"{MODEL}@3")
    result = invoke("deploy", "42@9")
    assert result.exit_code == 2
    assert f"model version {MODEL}@9 does not exist" in one_line_error(result)
    assert registry.methods() == ["GetModel"]


@pytest.mark.parametrize(("args", "message"), [
    (["deploy", "42@3", "--endpoint", "projects/my-proj/locations/europe-west4/endpoints/7"],
     "is in europe-west4, but the model is in us-central1"),
    (["deploy", "projects/my-proj/locations/europe-west4/models/42@3"],
     "is in europe-west4, not in --region us-central1"),
    (["deploy", "42@3", "--min-replicas", "2", "--max-replicas", "1"], "need 1 <= min <= max"),
    (["deploy", "not a model"], "is not a model version"),
    (["predict", "--endpoint", "projects/p/locations/asia-east1/endpoints/7", "hi"],
     "is in asia-east1"),
    (["predict", "hi"], "give either --endpoint ID"),
    (["predict", "--endpoint", "7"], "give either a prompt"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_call(registry, args, message) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in one_line_error(result)
    assert registry.calls == []


def test_an_endpoint_that_does_not_exist(registry) -> None:
    registry.add_model(f"{MODEL}@3")
    result = invoke("deploy", "42@3", "--endpoint", "999")
    assert result.exit_code == 2
    assert "endpoints/999 does not exist" in one_line_error(result)
    assert "DeployModel" not in registry.methods()


def test_undeploy_a_version_and_delete_the_endpoint(registry) -> None:
    registry.add_endpoint(ENDPOINT, deployed=[("11", f"{MODEL}@3")])
    dry = invoke("undeploy", "--endpoint", "7", "42@3", "--delete-endpoint", "--dry-run")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)["requests"]
    assert [r["method"].rsplit(".", 1)[-1] for r in planned] == ["UndeployModel",
                                                                 "DeleteEndpoint"]
    assert registry.methods() == ["GetEndpoint"], "a dry run only reads the endpoint"
    result = invoke("undeploy", "--endpoint", "7", "42@3", "--delete-endpoint")
    assert result.exit_code == 0, result.output
    assert registry.methods()[1:] == ["GetEndpoint", "UndeployModel", "DeleteEndpoint"]
    assert registry.endpoints == {}


def test_undeploy_a_version_that_is_not_there(registry) -> None:
    registry.add_endpoint(ENDPOINT, deployed=[("11", f"{MODEL}@3")])
    result = invoke("undeploy", "--endpoint", "7", "42@5")
    assert result.exit_code == 2
    assert "is not deployed on" in one_line_error(result)


def test_predict_sends_a_chat_completions_instance(registry, tmp_path) -> None:
    from google.protobuf import json_format

    registry.add_endpoint(ENDPOINT)
    result = invoke("predict", "--endpoint", "7", "--max-tokens", "32", "--system-prompt",
                    "Be brief.", "What is LoRA?")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == VLLM_ANSWER
    (req,) = registry.requests("Predict")
    assert req.endpoint == ENDPOINT
    (instance,) = [json_format.MessageToDict(v) for v in req._pb.instances]
    assert instance == {
        "@requestFormat": "chatCompletions",
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "What is LoRA?"}],
        "max_tokens": 32, "temperature": 0, "top_p": 1,
    }
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    result = invoke("predict", "--endpoint", "7", "--file", str(prompts))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["one", "two"]
    assert {r["response"] for r in rows} == {VLLM_ANSWER}


def test_predict_on_an_endpoint_that_does_not_exist(registry) -> None:
    result = invoke("predict", "--endpoint", "8", "hi")
    assert result.exit_code == 2
    assert "endpoints/8 does not exist" in one_line_error(result)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_predict_local_with_nothing_listening() -> None:
    result = invoke("predict", "--local", f"http://127.0.0.1:{free_port()}", "hi")
    assert result.exit_code == 2
    assert "nothing answers at" in one_line_error(result)


def test_serve_on_a_port_in_use(tmp_path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("serve", str(model), "--port", str(port))
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(result)


def test_serve_a_run_without_a_merged_model(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"artifacts": {}}))
    result = invoke("serve", str(run))
    assert result.exit_code == 2
    assert "no merged model in" in one_line_error(result)


def fake_model(folder: Path, base_model: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    if base_model:
        (folder / "export.json").write_text(json.dumps({"base_model": base_model}))
    return folder


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """`submit serve` up to the server: what start_server is asked to serve."""
    from cli import serving

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(serving, "start_server", lambda model_dir, host, port, device="auto",
                        served_name="": calls.append({"model_dir": model_dir,
                                                      "served_name": served_name}))
    return calls


def test_serve_names_the_model_after_the_registry_model(tmp_path, started) -> None:
    model = fake_model(tmp_path / "merged", base_model="google/gemma-3-4b-it")
    result = invoke("serve", str(model), "--port", str(free_port()))
    assert result.exit_code == 0, result.output
    assert started == [{"model_dir": model, "served_name": "dolly-lora-gemma-3-4b-it"}]


def test_serve_a_run_under_the_name_its_register_step_recorded(tmp_path, started) -> None:
    run = tmp_path / "run"
    merged = fake_model(run / "pipeline" / "export" / "merged", base_model="google/gemma-3-1b-it")
    record = run / "pipeline" / "register-model" / "registered_model"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"display_name": "team-model"}))
    (run / "summary.json").write_text(json.dumps({"artifacts": {
        "export.merged": str(merged), "register-model.registered_model": str(record)}}))
    assert invoke("serve", str(run), "--port", str(free_port())).exit_code == 0
    assert started[-1]["served_name"] == "team-model"
    result = invoke("serve", str(run), "--port", str(free_port()), "--served-model-name", "mine")
    assert result.exit_code == 0, result.output
    assert started[-1] == {"model_dir": merged, "served_name": "mine"}


def test_the_ttl_run_undeploys_only_its_version_and_deletes_only_an_emptied_endpoint(
        registry) -> None:
    from components.deploy.ttl import undeploy_after_ttl

    registry.add_endpoint(ENDPOINT, deployed=[("11", f"{MODEL}@3"), ("12", f"{MODEL}@4")])
    args = ("my-proj", "us-central1", ENDPOINT, f"{MODEL}@3")
    assert undeploy_after_ttl(*args, delete_endpoint=True) == "undeployed"
    assert [d.id for d in registry.endpoints[ENDPOINT].deployed_models] == ["12"], \
        "a version deployed there later keeps serving"
    registry.add_endpoint(ENDPOINT, deployed=[("11", f"{MODEL}@3")])
    assert undeploy_after_ttl(*args, delete_endpoint=True) == "deleted"
    assert registry.endpoints == {}
    assert undeploy_after_ttl(*args, delete_endpoint=True) == "gone", "already cleaned up: no error"


def test_endpoints_lists_this_projects_endpoints_with_cost_age_and_ttl(registry) -> None:
    import datetime as dt

    soon = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=3)
    registry.add_endpoint(ENDPOINT, deployed=[("11", f"{MODEL}@3")], display_name="dolly-lora",
                          labels={"source": "dolly-lora", "ttl-until": f"{soon:%Y%m%dt%H%Mz}"})
    registry.add_endpoint("projects/my-proj/locations/us-central1/endpoints/8",
                          labels={"source": "dolly-lora"})  # empty: costs nothing
    registry.add_endpoint("projects/my-proj/locations/us-central1/endpoints/9",
                          deployed=[("21", f"{MODEL}@1")])  # not this project's: not listed
    result = invoke("endpoints")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["endpoint"].rsplit("/", 1)[-1] for r in rows] == ["7", "8"]
    served, empty = rows
    assert served["deployed"] == [{"id": "11", "model": f"{MODEL}@3",
                                   "machine": "g2-standard-8 + 1 x NVIDIA_L4", "replicas": "1-2"}]
    assert served["replicas"] == 1 and served["hourly_usd"] == pytest.approx(0.85, abs=0.01)
    assert 2.9 <= served["ttl_hours_left"] <= 3.0 and served["age_hours"] > 0
    assert empty["hourly_usd"] == 0 and empty["ttl_until"] is None
    assert "2 endpoint(s), about $0.85/h while deployed" in result.stderr
