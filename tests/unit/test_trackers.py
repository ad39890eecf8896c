"""Tracking fans out to every chosen tracker, read back with each tracker's own reader.

TensorBoard: tensorboard's EventAccumulator; MLflow: MlflowClient on the local SQLite store;
W&B: the offline run file. One short fine-tune (HF's report_to integrations write the curves)
and one evaluation of its adapter serve every test here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from components.common.config import DataConfig, TrackingConfig
from components.common.tracking import MultiRun, tracking_run
from components.prepare_data.prepare import prepare, write_jsonl

STEPS = 8


@pytest.fixture(scope="module")
def tracked_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tracking")


@pytest.fixture(scope="module")
def data(tmp_path_factory, tokenizer) -> dict[str, str]:
    cfg = DataConfig(dataset="embedded://dolly-15k-sample.jsonl",
                     base_model="embedded://tiny-gemma3", max_seq_len=256, test_fraction=0.1)
    splits = prepare(cfg, tokenizer).splits
    out = tmp_path_factory.mktemp("data")
    sizes = {"train": 64, "validation": 8, "test": 8}
    for name, n in sizes.items():
        write_jsonl(out / f"{name}.jsonl", splits[name][:n])
    return {name: str(out / f"{name}.jsonl") for name in sizes}


def _env(mp: pytest.MonkeyPatch, tracked_dir: Path) -> None:
    """Module fixtures run before the per-test offline environment (conftest): set it here."""
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR",
                "WANDB_CONFIG_DIR"):
        mp.setenv(var, str(tracked_dir / "wandb"))
    mp.setenv("WANDB_MODE", "offline")
    mp.delenv("WANDB_API_KEY", raising=False)
    mp.setenv("DOLLY_LORA_TRACKING_DIR", str(tracked_dir))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


@pytest.fixture(scope="module")
def fine_tuned(data, tracked_dir, tmp_path_factory) -> dict:
    """run_fine_tune with trackers=tensorboard,mlflow,wandb (W&B offline)."""
    from components.fine_tune.train import run_fine_tune

    model_dir = tmp_path_factory.mktemp("model") / "adapter"
    params = {"base_model": "embedded://tiny-gemma3", "max_seq_len": 256, "max_steps": STEPS,
              "learning_rate": 3e-3, "per_device_train_batch_size": 8,
              "gradient_accumulation_steps": 1, "logging_steps": 2, "eval_steps": 4,
              "warmup_ratio": 0.0, "trackers": "wandb,tensorboard,mlflow",
              "wandb_project": "test-trackers"}
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, tracked_dir)
        meta = run_fine_tune(params, data["train"], data["validation"], str(model_dir),
                             run_id="grp-tracked")
        import wandb

        wandb.teardown()
    return {"meta": meta, "model_dir": model_dir}


def logged_steps(model_dir: Path) -> list[int]:
    history = json.loads((model_dir / "log_history.json").read_text())
    return [h["step"] for h in history if "loss" in h]


def test_fine_tune_reports_every_chosen_tracker(fine_tuned):
    report = fine_tuned["meta"]["tracking"]
    assert report["chosen"] == ["wandb", "tensorboard", "mlflow"]
    assert report["received"] == ["wandb", "tensorboard", "mlflow"] and report["failed"] == {}
    saved = json.loads((fine_tuned["model_dir"] / "metrics.json").read_text())
    assert saved["tracking"] == report  # what the report step reads on Vertex


def test_tensorboard_event_files_hold_every_logged_step(fine_tuned, tracked_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tracked_dir / "tensorboard" / "fine-tune"
    assert fine_tuned["meta"]["tracking"]["where"]["tensorboard"] == str(logdir)
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    steps = logged_steps(fine_tuned["model_dir"])
    assert steps[0] == 1 and steps[-1] == STEPS and len(steps) == STEPS // 2 + 1
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == steps
    history = json.loads((fine_tuned["model_dir"] / "log_history.json").read_text())
    assert [round(e.value, 4) for e in loss] == [round(h["loss"], 4) for h in history
                                                 if "loss" in h]
    assert {"train/learning_rate", "train/grad_norm", "train/tokens_per_second",
            "eval/loss"} <= tags
    assert [e.step for e in acc.Scalars("train/tokens_per_second")] == steps
    assert "summary/train_loss" in tags  # the step's own summary, beside HF's curves


def _mlflow_runs(tracked_dir: Path, step: str):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tracked_dir / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("dolly-lora")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.step = '{step}'")
    return client, runs


def test_mlflow_store_holds_params_metric_history_and_the_adapter(fine_tuned, tracked_dir):
    client, [run] = _mlflow_runs(tracked_dir, "fine-tune")
    assert run.info.run_name == "grp-tracked-fine-tune"
    assert run.data.tags["pipeline_run"] == "grp-tracked"
    assert run.data.params["config.lora_r"] == "16"
    assert run.data.params["config.trackers"] == "wandb,tensorboard,mlflow"
    assert run.data.params["learning_rate"] == "0.003"  # HF's MLflowCallback: TrainingArguments
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted({m.step for m in history}) == logged_steps(fine_tuned["model_dir"])
    assert "eval_loss" in run.data.metrics and "tokens_per_second" in run.data.metrics
    files = {a.path for a in client.list_artifacts(run.info.run_id, "lora-adapter")}
    assert "lora-adapter/adapter_model.safetensors" in files
    assert run.data.tags["artifact.lora-adapter"].startswith("file://")


def test_wandb_still_gets_the_training_curve(fine_tuned, tracked_dir):
    from tests.wandb_reader import read_runs

    [run] = [r for r in read_runs(tracked_dir / "wandb") if r.job_type == "fine-tune"]
    assert run.group == "grp-tracked" and run.config["trackers"] == "wandb,tensorboard,mlflow"
    steps = [row["train/global_step"] for row in run.history if "train/loss" in row]
    assert steps == logged_steps(fine_tuned["model_dir"])
