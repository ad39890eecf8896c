"""Each parameter is declared once (a config section field) and reaches its step by construction.

What could go wrong, and is checked here: a field that never reaches its component (it would run
with its default), a component parameter fed from a different pipeline parameter, a pipeline
parameter without the help text the Vertex console shows, and a new field that needs more than its
declaration to arrive.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from components.common.config import (
    DataConfig,
    EvalConfig,
    FetchConfig,
    InferenceConfig,
    PipelineConfig,
    ReportConfig,
    TrainConfig,
)
from components.common.errors import InputError
from components.common.step import StepIO, StepResult, call, make_parser

ROOT = Path(__file__).resolve().parents[2]
# Step -> (its section, the fields an input artifact fills instead of a parameter).
SECTIONS = {
    "fetch-base-model": (FetchConfig, set()),
    "prepare-data": (DataConfig, {"base_model"}),
    "fine-tune": (TrainConfig, {"base_model"}),
    "evaluate": (EvalConfig, set()),
    "inference": (InferenceConfig, set()),
    "report": (ReportConfig, set()),
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from kfp import compiler

    from pipelines.lora_pipeline import lora_pipeline

    out = tmp_path_factory.mktemp("spec") / "p.yaml"
    compiler.Compiler().compile(lora_pipeline, str(out))
    return yaml.safe_load(out.read_text())


def task_inputs(spec: dict, step: str) -> dict:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for t in list(tasks.values()):  # tasks inside dsl.If live in a sub-DAG component
        sub = spec["components"].get(t["componentRef"]["name"], {}).get("dag")
        if sub:
            tasks.update(sub["tasks"])
    match = [t for t in tasks.values() if t["taskInfo"]["name"] == step]
    assert match, f"no task {step}"
    return match[0].get("inputs", {}).get("parameters", {})


@pytest.mark.parametrize("step", list(SECTIONS))
def test_every_section_field_reaches_its_step_from_the_same_parameter(spec: dict, step: str):
    section, from_artifact = SECTIONS[step]
    params = task_inputs(spec, step)
    wanted = set(section.model_fields) - from_artifact
    fed = {k: v["componentInputParameter"] for k, v in params.items()
           if "componentInputParameter" in v}
    assert set(fed) == wanted, f"{step}: missing {wanted - set(fed)}, extra {set(fed) - wanted}"
    assert all(k == v for k, v in fed.items()), {k: v for k, v in fed.items() if k != v}


def test_every_pipeline_parameter_is_declared_once_and_described(spec: dict):
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(PipelineConfig.model_fields)
    undescribed = [k for k, v in params.items() if not v.get("description")]
    assert not undescribed
    assert params["lora_r"]["description"] == TrainConfig.model_fields["lora_r"].description
    assert params["lora_r"]["defaultValue"] == 16


LOCAL_BUILD_PROBE = """
import sys, yaml
from kfp import compiler
from pipelines.lora_pipeline import lora_pipeline
compiler.Compiler().compile(lora_pipeline, sys.argv[1])
"""
RUN_PROBE = """
from components.common.step import section_of
from components.fine_tune.train import run_fine_tune
print(section_of(run_fine_tune)(label_smoothing=0.3).label_smoothing)
"""


@pytest.mark.parametrize("build", ["local pipeline build", "compile.py"])
def test_a_field_added_to_a_section_reaches_its_component(tmp_path: Path, build: str):
    """Add one field to TrainConfig in a copy of the code and nothing else: the build rewrites
    the stale signatures (saying so), the field becomes a pipeline parameter with its help,
    fine-tune receives it from that parameter, and the run function sees it in its config."""
    for d in ("components", "pipelines"):
        shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "compile.py", tmp_path / "compile.py")
    config = tmp_path / "components/common/config.py"
    text = config.read_text()
    anchor = '    """fine-tune."""\n'
    assert anchor in text
    config.write_text(text.replace(anchor, anchor + (
        '    label_smoothing: float = Field(0.1, ge=0.0, description="Label smoothing factor.")\n'
    )))
    out_yaml = tmp_path / "p.yaml"
    argv = (["-c", LOCAL_BUILD_PROBE, str(out_yaml)] if build == "local pipeline build"
            else ["compile.py", "--out", str(out_yaml)])

    def run(args: list[str]) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True,
                             text=True, timeout=300,
                             env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
        assert res.returncode == 0, res.stderr[-2000:]
        return res

    built = run(argv)
    regenerated = [line for line in built.stderr.splitlines() if line.startswith("regenerated")]
    assert len(regenerated) == 1 and "components/fine_tune/component.py" in regenerated[0]
    assert "pipelines/signature.py" in regenerated[0]
    component = (tmp_path / "components/fine_tune/component.py").read_text()
    assert "    label_smoothing: float,\n" in component
    assert "        label_smoothing: Label smoothing factor.\n" in component
    spec = yaml.safe_load(out_yaml.read_text())
    root = spec["root"]["inputDefinitions"]["parameters"]["label_smoothing"]
    task = spec["root"]["dag"]["tasks"]["fine-tune"]["inputs"]["parameters"]["label_smoothing"]
    assert (root["defaultValue"], root["description"]) == (0.1, "Label smoothing factor.")
    assert task["componentInputParameter"] == "label_smoothing"
    assert "label_smoothing" in spec["components"]["comp-fine-tune"]["inputDefinitions"][
        "parameters"]
    assert run(["-c", RUN_PROBE]).stdout.split("\n")[0] == "0.3"
    assert "regenerated" not in run(argv).stderr  # now current: nothing rewritten


# ------------------------------------------------------------------ the runtime half: `call`


class FakeArtifact(SimpleNamespace):
    def __init__(self, path: str, metadata: dict | None = None) -> None:
        super().__init__(path=path, metadata=dict(metadata or {}), uri=path)


def run_probe(cfg: TrainConfig, *, train: str, model: str, run_id: str = "",
              required_accelerator: str = "", train_metadata: dict | None = None) -> StepResult:
    """A run function shaped like the real ones, recording what it received."""
    return StepResult(metadata={"model": {
        "lr": cfg.learning_rate, "base": cfg.base_model, "train": train, "run_id": run_id,
        "acc": required_accelerator, "rows": (train_metadata or {}).get("rows"),
        "artifact_uri": "gs://b/model"}}, value=True)


def test_call_builds_the_config_passes_paths_and_sets_metadata(tmp_path: Path):
    base = FakeArtifact("/root/job-1/fetch/model")
    train = FakeArtifact("/root/job-0/prep/train", {"rows": 12})  # a cached input, older job
    model = FakeArtifact(str(tmp_path / "job-7" / "fine-tune" / "model"))
    io = StepIO(inputs={"base": base, "train": train}, outputs={"model": model},
                config_from_inputs={"base_model": "base"},
                input_metadata={"train_metadata": "train"}, run_id_from="model")
    arguments = {"base": base, "train": train, "model": model, "learning_rate": 0.01,
                 "required_accelerator": "NVIDIA_L4"}
    value = call(run_probe, arguments, io)
    assert value is True
    assert {k: v for k, v in model.metadata.items() if not k.startswith("peak_")} == {
        "lr": 0.01, "base": base.path, "train": train.path, "run_id": "job-7",
        "acc": "NVIDIA_L4", "rows": 12}
    assert "peak_rss_mb" in model.metadata  # the step's peak memory, on its first output
    assert model.uri == "gs://b/model"


def test_call_passes_only_what_the_io_names(tmp_path: Path):
    """No name convention: without `input_metadata` / `run_id_from` the run gets neither."""
    train = FakeArtifact("/root/job-0/prep/train", {"rows": 12})
    model = FakeArtifact(str(tmp_path / "job-7" / "fine-tune" / "model"))
    call(run_probe, {"train": train, "model": model},
         StepIO(inputs={"train": train}, outputs={"model": model}))
    assert (model.metadata["run_id"], model.metadata["rows"]) == ("", None)


def test_call_refuses_bad_settings_in_one_line(tmp_path: Path):
    model = FakeArtifact(str(tmp_path / "a" / "b" / "model"))
    train = FakeArtifact("t")
    with pytest.raises(InputError, match=r"^learning_rate: .*less than or equal to 1"):
        call(run_probe, {"train": train, "model": model, "learning_rate": 5.0},
             StepIO(inputs={"train": train}, outputs={"model": model}))


@pytest.mark.parametrize("module", [
    "components.fetch_model.fetch:run_fetch", "components.prepare_data.prepare:run_prepare",
    "components.fine_tune.train:run_fine_tune", "components.evaluate.evaluate:run_evaluate",
    "components.inference.infer:run_inference", "components.report.report:run_report",
])
def test_each_step_runs_alone_with_every_setting_of_its_section(module: str):
    import importlib

    mod, name = module.split(":")
    run = getattr(importlib.import_module(mod), name)
    from components.common.step import section_of

    section = section_of(run)
    parser = make_parser(run)
    dests = {a.dest for a in parser._actions}  # noqa: SLF001 - argparse has no public listing
    assert set(section.model_fields) <= dests
    field = next(iter(section.model_fields))
    flag = "--" + field.replace("_", "-")
    kind = type(section.model_fields[field].default)
    value = {str: "x", int: "3", float: "0.5", bool: "true"}[kind]
    required = [a for a in parser._actions if a.required]  # noqa: SLF001
    argv = [flag, value] + [x for a in required for x in (a.option_strings[0], "p")]
    assert getattr(parser.parse_args(argv), field) == kind(value) if kind is not bool else True


def test_prepare_runs_as_a_module_with_its_settings(tmp_path: Path):
    """`python -m components.prepare_data.prepare` with section flags writes the four splits
    and the data card."""
    out = {n: tmp_path / f"{n}.jsonl" for n in ("train", "validation", "test", "rejected",
                                                "data_card")}
    cmd = [sys.executable, "-m", "components.prepare_data.prepare",
           "--dataset", "embedded://dolly-15k-sample.jsonl", "--base_model",
           "embedded://tiny-gemma3", "--test-fraction", "0.2", "--wandb_project", "",
           *[x for n, p in out.items() for x in (f"--{n}", str(p))]]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(out.pop("data_card").read_text())["format"] == "dolly"
    rows = {n: len(p.read_text().splitlines()) for n, p in out.items()}
    total = rows["train"] + rows["validation"] + rows["test"]
    assert 0.15 < rows["test"] / total < 0.25
    bad = subprocess.run([*cmd, "--val_fraction", "0.9"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "leaves nothing to train on" in bad.stderr
