"""A sweep compiles to one ParallelFor of fine-tunes with its parallelism, collected into
select-trial, and a grown grid keeps every earlier trial's Vertex cache key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import compiler
from pipelines.settings import CompileSettings, resolve
from pipelines.sweep import build_grid, trial_items

IMAGE = "us-central1-docker.pkg.dev/my-proj/dolly-lora/trainer:abc123"


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(__import__("os").environ):
        if k.startswith("DOLLY_LORA_"):
            monkeypatch.delenv(k)


def compiled(tmp_path: Path, values: str, parallelism: int = 2) -> dict[str, Any]:
    params = resolve(env={}).params
    items = trial_items(build_grid([f"lora_r={values}"], params))
    base = resolve(settings={"image": IMAGE}, env={}).settings
    settings = CompileSettings(**{**base.model_dump(), "sweep": items,
                                  "sweep_parallelism": parallelism})
    path = compiler.compile_pipeline(tmp_path / f"sweep-{values}.yaml", settings)
    return yaml.safe_load(Path(path).read_text())


def loop(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sweep's ParallelFor task in the root DAG, and the sub-DAG it runs."""
    [task] = [t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t]
    assert task["taskInfo"]["name"] == "sweep-trials"
    return task, spec["components"][task["componentRef"]["name"]]


def cache_keys(spec: dict[str, Any]) -> dict[str, str]:
    """Each trial's fine-tune as Vertex keys its cache: the component and executor (what runs),
    the task's inputs with the loop item resolved to this trial's value (what it runs on)."""
    task, body = loop(spec)
    ft = body["dag"]["tasks"]["fine-tune"]
    component = spec["components"][ft["componentRef"]["name"]]
    executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
    item = task["parameterIterator"]["itemInput"]
    keys = {}
    for value in json.loads(task["parameterIterator"]["items"]["raw"]):
        inputs = json.dumps(ft["inputs"], sort_keys=True).replace(
            json.dumps({"componentInputParameter": item}), json.dumps({"constant": value}))
        keys[value] = json.dumps([component, executor, inputs], sort_keys=True)
    return keys


def test_the_sweep_is_a_parallel_for_with_its_parallelism(tmp_path: Path) -> None:
    spec = compiled(tmp_path, "8,16", parallelism=1)
    task, body = loop(spec)
    assert task["iteratorPolicy"]["parallelismLimit"] == 1
    items = json.loads(task["parameterIterator"]["items"]["raw"])
    assert [json.loads(i) for i in items] == [{"lora_r": 8}, {"lora_r": 16}]
    assert list(body["dag"]["tasks"]) == ["fine-tune"]
    ft = body["dag"]["tasks"]["fine-tune"]
    assert ft["inputs"]["parameters"]["trial"] == {
        "componentInputParameter": task["parameterIterator"]["itemInput"]}
    root = spec["root"]["dag"]["tasks"]
    # prepare-data and fetch-base-model once, outside the loop; the winner goes on.
    assert {"fetch-base-model", "prepare-data", "select-trial", "evaluate"} <= set(root)
    assert "fine-tune" not in root
    collected = root["select-trial"]["inputs"]["artifacts"]["models"]
    assert collected["taskOutputArtifact"]["producerTask"] == task["componentRef"]["name"][5:]
    for step in ("evaluate", "inference", "report"):
        model = root[step]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
        assert model == {"outputArtifactKey": "winner", "producerTask": "select-trial"}, step


def test_a_grown_grid_reruns_only_the_new_trial(tmp_path: Path) -> None:
    """Adding lora_r=32 to lora_r=8,16: the two earlier trials' fine-tunes have the same cache
    key as before (Vertex reuses them), only the new one is new; every step before the loop is
    unchanged too."""
    before, after = compiled(tmp_path, "8,16"), compiled(tmp_path, "8,16,32")
    old, new = cache_keys(before), cache_keys(after)
    assert len(old) == 2 and len(new) == 3
    assert all(new[v] == k for v, k in old.items())
    assert [json.loads(v) for v in set(new) - set(old)] == [{"lora_r": 32}]
    for step in ("fetch-base-model", "prepare-data"):
        a, b = before["root"]["dag"]["tasks"][step], after["root"]["dag"]["tasks"][step]
        assert a == b, step
        assert before["components"][a["componentRef"]["name"]] == \
            after["components"][b["componentRef"]["name"]]


def test_without_a_sweep_there_is_no_loop(tmp_path: Path) -> None:
    base = resolve(settings={"image": IMAGE}, env={}).settings
    spec = yaml.safe_load(Path(compiler.compile_pipeline(tmp_path / "one.yaml", base)
                               ).read_text())
    root = spec["root"]["dag"]["tasks"]
    assert not any("parameterIterator" in t for t in root.values())
    assert "select-trial" not in root
    assert root["evaluate"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"][
        "producerTask"] == "fine-tune"
