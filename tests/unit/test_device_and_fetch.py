"""The base model fetched once, and GPU steps that refuse to run without their GPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from components.common import modeling
from components.common.errors import InputError
from components.common.modeling import (
    AcceleratorUnavailable,
    model_identity,
    model_source,
    parse_driver_version,
    require_accelerator,
)
from components.common.paths import EMBEDDED_MODEL, pipeline_job_name
from components.fetch_model.fetch import fetch_model


def test_embedded_model_is_fetched_with_its_source(tmp_path: Path) -> None:
    meta = fetch_model("embedded://tiny-gemma3", tmp_path / "base")
    base = tmp_path / "base"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (base / name).read_bytes() == (EMBEDDED_MODEL / name).read_bytes()
    assert json.loads((base / "fetched_from.json").read_text()) == {
        "ref": "embedded://tiny-gemma3", "revision": ""}
    assert meta["source"] == "embedded://tiny-gemma3" and meta["files"] >= 4
    assert model_source(str(base)) == "embedded://tiny-gemma3"
    assert model_source("google/gemma-3-1b-it") == "google/gemma-3-1b-it"


def test_identity_ignores_where_the_weights_were_fetched_to(tmp_path: Path) -> None:
    """A resume keys on the weights, not on the per-job folder they were fetched into."""
    from components.common.config import TrainConfig
    from components.fine_tune.checkpointing import fingerprint

    a, b = tmp_path / "job-1" / "base", tmp_path / "job-2" / "base"
    fetch_model("embedded://tiny-gemma3", a)
    fetch_model("embedded://tiny-gemma3", b)
    rows = [{"messages": [{"role": "user", "content": "hi"}]}]
    assert fingerprint(TrainConfig(base_model=str(a)), rows) == fingerprint(
        TrainConfig(base_model=str(b)), rows)
    (b / "fetched_from.json").write_text(json.dumps({"ref": "org/m", "revision": "abc"}))
    assert model_identity(str(b)) == "org/m@abc"
    assert fingerprint(TrainConfig(base_model=str(a)), rows) != fingerprint(
        TrainConfig(base_model=str(b)), rows)


@pytest.mark.parametrize(("ref", "message"), [
    ("embedded://no-such-model", "unknown embedded asset"),
    ("google/gemma-3-1b-it", "cannot download google/gemma-3-1b-it"),  # HF_HUB_OFFLINE here
    ("not a model", "neither a Hugging Face model id"),
])
def test_bad_model_references_are_one_clear_error(tmp_path: Path, ref: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        fetch_model(ref, tmp_path / "base")


def test_a_folder_that_is_not_a_chat_model_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(EMBEDDED_MODEL, src)
    (src / "config.json").unlink()
    with pytest.raises(InputError, match="no config.json"):
        fetch_model(str(src), tmp_path / "a")
    shutil.copytree(EMBEDDED_MODEL, src, dirs_exist_ok=True)
    (src / "chat_template.jinja").unlink()
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (src / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="no chat template"):
        fetch_model(str(src), tmp_path / "b")


def test_job_name_comes_from_the_output_path() -> None:
    vertex = "/gcs/bkt/root/123456789/dolly-lora-20261128-0700/fine-tune_-4242/model"
    assert pipeline_job_name(vertex) == "dolly-lora-20261128-0700"
    local = "/runs/a/pipeline/dolly-lora-2026-11-28-07-07-55-609002/prepare-data/train"
    assert pipeline_job_name(local) == "dolly-lora-2026-11-28-07-07-55-609002"
    assert pipeline_job_name("model") == ""


def test_local_runner_steps_take_whatever_device_there_is() -> None:
    assert require_accelerator("", "fine-tune") == modeling.best_device()


def test_a_gpu_step_without_cuda_stops_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(modeling, "_driver_version", lambda: None)
    with pytest.raises(AcceleratorUnavailable) as err:
        require_accelerator("NVIDIA_L4", "fine-tune")
    text = str(err.value)
    assert "fine-tune was compiled to run on NVIDIA_L4 but CUDA is not usable" in text
    assert f"torch {torch.__version__}" in text and "driver here: none" in text
    assert "Not falling back to CPU" in text
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert require_accelerator("NVIDIA_L4", "fine-tune") == "cuda"


def test_the_driver_a_cuda_build_needs_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(modeling, "_driver_version", lambda: "470.82.01")
    text = modeling.cuda_diagnosis()
    assert "built for CUDA 12.8 and needs an NVIDIA driver >= 525.60.13" in text
    assert "driver here: 470.82.01" in text


def test_driver_version_from_the_kernel_module() -> None:
    text = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC "
            "2023\nGCC version:  gcc version 12.2.0")
    assert parse_driver_version(text) == "535.104.05"
    open_kernel = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.133.20  Release"
    assert parse_driver_version(open_kernel) == "570.133.20"
    assert parse_driver_version("") is None


@pytest.mark.parametrize("step", ["fine-tune", "evaluate", "inference"])
def test_gpu_steps_refuse_before_reading_anything(step: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Seconds, not a model load: the inputs do not even exist."""
    import torch

    from components.evaluate.evaluate import run_evaluate
    from components.fine_tune.train import run_fine_tune
    from components.inference.infer import run_inference

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    missing = str(tmp_path / "missing")
    from components.common.config import EvalConfig, InferenceConfig, TrainConfig

    acc = {"required_accelerator": "NVIDIA_L4"}
    run = {
        "fine-tune": lambda: run_fine_tune(TrainConfig(base_model=missing), train=missing,
                                           validation=missing, model=str(tmp_path / "out"), **acc),
        "evaluate": lambda: run_evaluate(EvalConfig(), base=missing, test=missing, model=missing,
                                         generations=str(tmp_path / "g.json"), **acc),
        "inference": lambda: run_inference(InferenceConfig(), base=missing, test=missing,
                                           model=missing, predictions=str(tmp_path / "p"), **acc),
    }[step]
    with pytest.raises(AcceleratorUnavailable, match=f"{step} was compiled to run on NVIDIA_L4"):
        run()
    assert not (tmp_path / "out").exists() and not (tmp_path / "p").exists()
