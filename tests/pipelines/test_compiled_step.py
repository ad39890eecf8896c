"""scripts.compiled_step: a compiled task's executor, run exactly as Vertex would start it.

prepare-data runs for real here (host venv, local pipeline root); scripts/container_check.sh
runs the same invocations inside the image.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipelines.compiler import compile_pipeline
from scripts.compiled_step import (
    StepError,
    executor_env,
    executor_invocation,
    load_spec,
    main,
    upstream,
)

JOB = "check-job"
SMALL = {"base_model": "embedded://tiny-gemma3", "dataset": "embedded://dolly-15k-sample.jsonl",
         "max_seq_len": "256"}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return load_spec(compile_pipeline(tmp_path_factory.mktemp("c") / "p.yaml"))


def run_argv(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Like the container: `sh -ec ...`, whose `python3` must be this venv's."""
    env = {**os.environ, "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def prepared(spec: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fetch-base-model, data-key and prepare-data run for real under a local root (kfp uses a
    scheme-less URI as the path)."""
    root = tmp_path_factory.mktemp("root")
    for task in ("data-key", "fetch-base-model", "prepare-data"):
        image, argv, _ = executor_invocation(spec, task, root_uri=str(root), job_name=JOB,
                                             overrides=SMALL)
        assert argv[:2] == ["sh", "-ec"] and "exec python3 -m components.common.entrypoint" in argv[2]
        done = run_argv(argv, cwd=root)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


def test_upstream_of_fine_tune_is_topological(spec: dict[str, Any]) -> None:
    order = upstream(spec, "fine-tune")
    assert set(order) == {"fetch-base-model", "data-key", "prepare-data", "fine-tune"}
    assert order[-1] == "fine-tune"
    assert order.index("prepare-data") > max(order.index("fetch-base-model"),
                                             order.index("data-key"))
    prep = upstream(spec, "prepare-data")
    assert set(prep) == {"fetch-base-model", "data-key", "prepare-data"}
    assert prep[-1] == "prepare-data"
    report = upstream(spec, "report")
    assert report[-1] == "report" and set(report) >= {"prepare-data", "fine-tune", "evaluate"}


def test_prepare_data_runs_and_writes_datasets_with_metadata(spec: dict[str, Any],
                                                            prepared: Path) -> None:
    task_dir = prepared / JOB / "prepare-data"
    out = json.loads((task_dir / "executor_output.json").read_text())
    for split in ("train", "validation", "test"):
        rows = (task_dir / split).read_text().splitlines()
        assert rows and json.loads(rows[0])
        art = out["artifacts"][split]["artifacts"][0]
        assert art["uri"] == f"{prepared}/{JOB}/prepare-data/{split}"
        assert art["metadata"]["rows"] == len(rows) > 0


def test_fine_tune_is_the_worker_pool_container_with_inner_inputs(spec: dict[str, Any],
                                                                  prepared: Path) -> None:
    image, argv, ex_in = executor_invocation(
        spec, "fine-tune", root_uri=str(prepared), job_name=JOB,
        overrides={**SMALL, "max_steps": "3"})
    pool = spec["components"]["comp-fine-tune"]["inputDefinitions"]["parameters"][
        "worker_pool_specs"]["defaultValue"][0]["container_spec"]
    assert image == pool["image_uri"]
    assert argv[:4] == pool["command"] and argv[-2:] == ["--function_to_execute", "fine_tune"]
    # {{$.json_escape[1]}} -> the executor input itself, as the launcher hands it to the worker
    assert json.loads(argv[argv.index("--executor_input") + 1]) == ex_in
    params = ex_in["inputs"]["parameterValues"]
    assert params["max_steps"] == 3 and params["seed"] == 42
    assert params["required_accelerator"] == "NVIDIA_L4"
    assert not {"worker_pool_specs", "project", "location", "display_name", "service_account",
                "network"} & set(params)
    base = ex_in["inputs"]["artifacts"]["base"]["artifacts"][0]
    assert base["uri"] == f"{prepared}/{JOB}/fetch-base-model/model"
    assert base["metadata"]["source"] == "embedded://tiny-gemma3"
    # upstream artifacts at {root}/{job}/{producer}/{key}, with the producer's metadata
    train = ex_in["inputs"]["artifacts"]["train"]["artifacts"][0]
    assert train["uri"] == f"{prepared}/{JOB}/prepare-data/train" and train["metadata"]["rows"] > 0
    assert ex_in["outputs"]["artifacts"]["model"]["artifacts"][0]["uri"] == (
        f"{prepared}/{JOB}/fine-tune/model")
    assert ex_in["outputs"]["outputFile"] == f"{prepared}/{JOB}/fine-tune/executor_output.json"
    assert "gcp_resources" not in ex_in["outputs"]["parameters"]  # the launcher's, not the code's
    # a custom job's replica gets Vertex's CLUSTER_SPEC (kfp: only the chief writes its output)
    assert json.loads(executor_env(spec, "fine-tune")["CLUSTER_SPEC"])["task"]["type"] == "workerpool0"
    assert executor_env(spec, "prepare-data") == {}


def test_gcs_root_maps_to_the_gcs_mount(spec: dict[str, Any], prepared: Path) -> None:
    # the bucket "b" lives at <prepared>/b on this machine, seen as /gcs/b in the step
    mount = prepared / "mount"
    (mount / "b").mkdir(parents=True)
    (mount / "b" / JOB).symlink_to(prepared / JOB)
    _, argv, ex_in = executor_invocation(spec, "fine-tune", root_uri="gs://b", job_name=JOB,
                                         gcs_mount=mount)
    assert ex_in["inputs"]["artifacts"]["train"]["artifacts"][0]["uri"] == (
        f"gs://b/{JOB}/prepare-data/train")
    assert ex_in["outputs"]["outputFile"] == f"/gcs/b/{JOB}/fine-tune/executor_output.json"


def test_refusals(spec: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(StepError, match="has not run"):
        executor_invocation(spec, "fine-tune", root_uri=str(tmp_path), job_name=JOB)
    with pytest.raises(StepError, match="neither inputs"):
        executor_invocation(spec, "prepare-data", root_uri=str(tmp_path), job_name=JOB,
                            overrides={"no_such_input": 1})
    with pytest.raises(StepError, match="sub-DAG"):
        executor_invocation(spec, "register-model", root_uri=str(tmp_path), job_name=JOB)
    bad = copy.deepcopy(spec)
    bad["root"]["dag"]["tasks"]["fetch-base-model"]["inputs"]["parameters"]["base_model"] = {
        "runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}
    with pytest.raises(StepError, match=r"pipeline_job_uuid.*cannot be resolved"):
        executor_invocation(bad, "fetch-base-model", root_uri=str(tmp_path), job_name=JOB)


def test_cli_prints_image_and_argv(spec: dict[str, Any], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    template = tmp_path / "p.yaml"
    template.write_text(json.dumps(spec))  # JSON is YAML
    assert main([str(template), "fetch-base-model", "--root", "gs://b/r", "--job", JOB,
                 "--set", "base_model=embedded://tiny-gemma3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["argv"][0] == "sh" and out["image"]
    assert out["executor_input"]["inputs"]["parameterValues"]["base_model"] == (
        "embedded://tiny-gemma3")
    assert main([str(template), "fine-tune", "--upstream"]) == 0
    assert json.loads(capsys.readouterr().out)[-1] == "fine-tune"
