"""The whole DAG through KFP's local runner on the embedded default (shortened), via the CLI,
with trackers=wandb,tensorboard,mlflow (read back with TensorBoard's and MLflow's own readers)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from components.common.modeling import load_model
from components.fine_tune.train import base_weights_digest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run_out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


TRACKED_STEPS = ["prepare-data", "fine-tune", "evaluate", "inference", "report"]


@pytest.fixture(scope="module")
def run(run_out) -> subprocess.CompletedProcess:
    """One `submit --local` of the embedded default (shortened) through the CLI, as a person
    runs it: its terminal output and the run folder are what the tests below read."""
    out = run_out
    env = {**os.environ, "WANDB_MODE": "offline"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the local store next to summary.json
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR",
                "WANDB_CONFIG_DIR"):
        env[var] = str(out / "wandb-home")
    proc = subprocess.run(
        [sys.executable, "-m", "cli.submit", "--local", "--output-dir", str(out),
         "--run-id", "e2e", "--param", "max_steps=30", "--param", "max_new_tokens=16",
         "--param", "trackers=wandb,tensorboard,mlflow"],
        capture_output=True, text=True, timeout=1800, env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return proc


@pytest.fixture(scope="module")
def summary(run, run_out) -> dict:
    last = run.stdout.strip().splitlines()[-1]
    assert last == str(run_out / "e2e" / "summary.json")
    return json.loads(Path(last).read_text())


STEPS = ("fetch-base-model", "prepare-data", "fine-tune", "evaluate", "gate", "inference",
         "register-model", "report")


def test_terminal_output_fits_one_screen_and_steps_log_has_the_rest(run, run_out):
    shown = run.stderr + run.stdout
    lines = shown.splitlines()
    assert len(lines) < 60, shown
    assert lines[-1] == str(run_out / "e2e" / "summary.json")  # the summary path is last
    for step in STEPS:  # a line as each step starts and one as it ends
        assert sum(re.search(rf"\d\d:\d\d:\d\d ▶ {step}$", ln) is not None
                   for ln in lines) == 1, step
        assert sum(re.search(rf"\d\d:\d\d:\d\d ■ {step} +[\d.]+ s", ln) is not None
                   for ln in lines) == 1, step
    figures = {step: next(ln for ln in lines if f"■ {step} " in ln) for step in STEPS}
    assert "rows: train " in figures["prepare-data"]
    assert "tokens/s" in figures["fine-tune"] and "loss " in figures["fine-tune"]
    assert "95%" in figures["evaluate"] and "tokens/s" in figures["inference"]
    assert re.search(r"^\s*loss\s+\d+\.\d{3}\s+\d+\.\d{3}", shown, re.M)  # the final table
    # Not a terminal here: each long step's plain progress lines, its first and its last at least
    progress = [ln for ln in lines if ln.startswith("progress ")]
    assert re.search(r"^progress fine-tune step 30/30 loss [\d.]+ [\d,]+ tok/s eta 0s$",
                     shown, re.M), progress
    assert any(re.fullmatch(r"progress evaluate rows (\d+)/\1 eta 0s \(tuned model\)", ln)
               for ln in progress), progress
    assert any(re.fullmatch(r"progress inference rows (\d+)/\1 eta 0s", ln)
               for ln in progress), progress
    assert lines.index(progress[0]) > lines.index(next(ln for ln in lines if "▶ fine-tune" in ln))
    assert "Got executor_input" not in shown and "'train_runtime'" not in shown
    log = (run_out / "e2e" / "steps.log").read_text()
    assert "Got executor_input" in log and "'train_runtime'" in log  # kfp's and a step's own
    for step in STEPS:
        assert f"Task '{step}' finished with status SUCCESS" in log  # colour codes removed


def test_every_step_succeeded_and_was_timed(summary):
    assert summary["status"] == "SUCCESS"
    assert set(summary["steps"]) == {"fetch-base-model", "data-key", "prepare-data", "fine-tune",
                                     "evaluate", "gate", "inference", "export", "register-model",
                                     "report"}
    for name, step in summary["steps"].items():
        assert step["status"] == "SUCCESS" and step["seconds"] > 0
        if name == "data-key":  # returns one string, no artifact to carry its peak
            continue
        assert step["peak_rss_mb"] > 20  # every step's own peak: at least the Python it runs
    assert summary["steps"]["fine-tune"]["peak_rss_mb"] > summary["steps"]["gate"]["peak_rss_mb"]


def test_row_counts_add_up(summary):
    kept = summary["train_rows"] + summary["val_rows"] + summary["test_rows"]
    assert kept + summary["rejected_rows"] == summary["source_rows"] == 228
    rejected = Path(summary["artifacts"]["prepare-data.rejected"]).read_text().splitlines()
    assert len(rejected) == summary["rejected_rows"]


def test_artifacts_exist(summary):
    for key in ("fetch-base-model.model", "prepare-data.train", "prepare-data.validation",
                "prepare-data.test", "prepare-data.rejected", "fine-tune.model",
                "evaluate.generations", "inference.predictions"):
        assert Path(summary["artifacts"][key]).exists(), key
    predictions = Path(summary["artifacts"]["inference.predictions"])
    preds = (predictions / "predictions.jsonl").read_text().splitlines()
    assert json.loads((predictions / "summary.json").read_text())["rows"] == len(preds)
    assert len(preds) == summary["test_rows"]
    row = json.loads(preds[0])
    assert {"prompt", "response", "prompt_tokens", "completion_tokens", "latency_s"} <= set(row)


def test_the_run_folder_holds_a_merged_model_that_answers_like_the_adapter(summary, run_out):
    """The export step's merged bf16 model, greedy, gives the inference step's answers."""
    from components.common.generation import generate, prompt_text
    from components.common.modeling import load_tokenizer
    from components.common.serving import chat_messages

    merged = Path(summary["merged_model"])
    assert merged.is_relative_to(run_out / "e2e") and (merged / "model.safetensors").is_file()
    assert summary["export"]["merge_max_abs_diff"] < summary["export"]["merge_tolerance"]
    assert summary["export"]["export_max_abs_diff"] <= summary["export"]["export_bound"]
    preds = [json.loads(line) for line in
             (Path(summary["artifacts"]["inference.predictions"]) / "predictions.jsonl")
             .read_text().splitlines()]
    tok = load_tokenizer(str(merged), padding_side="left")
    model = load_model(str(merged), device="cpu").eval()
    prompts = [prompt_text(tok, chat_messages(p["prompt"])) for p in preds]
    got = generate(model, tok, prompts, max_new_tokens=16, batch_size=16)
    assert [g.text for g in got] == [p["response"] for p in preds]
    record = json.loads(Path(summary["artifacts"]["register-model.registered_model"]).read_text())
    assert record["artifact_uri"] == str(merged) and record["split_hash"] == summary["split_hash"]


def test_tuned_beats_base_on_test_loss(summary):
    base, tuned = summary["eval"]["base"], summary["eval"]["tuned"]
    for m in (base, tuned):
        assert {"loss", "perplexity", "rougeL"} <= set(m)
    assert tuned["loss"] < base["loss"]


def test_lora_weights_changed_and_base_did_not(summary):
    adapter = Path(summary["artifacts"]["fine-tune.model"])
    weights = load_file(adapter / "adapter_model.safetensors")
    assert all(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)
    fresh = base_weights_digest(load_model("embedded://tiny-gemma3", device="cpu"))
    assert summary["training"]["base_weights_digest_after"] == fresh


def test_summary_has_per_category_metrics_and_the_interval(summary):
    ev = summary["eval"]
    assert sum(c["rows"] for c in ev["categories"].values()) == summary["test_rows"]
    for cat, c in ev["categories"].items():
        for m in ("base", "tuned"):
            assert {"loss", "perplexity", "rougeL"} <= set(c[m]), cat
        assert c["headline"]["improvement_low"] <= c["headline"]["improvement_high"]
    iv = ev["interval"]
    assert iv["metric"] == "loss" and iv["confidence"] == 0.95
    assert iv["improvement_low"] <= iv["improvement"] <= iv["improvement_high"]
    assert iv["rows"] >= iv["min_rows"] and iv["enough_rows"]  # the demo's gate decides
    assert iv["tuned_better"] == (iv["improvement_low"] > iv["threshold"])
    assert iv["tuned_better"], "30 steps of LoRA must lower the test loss beyond noise"


def test_report_next_to_summary_opens_in_chromium(summary, run_out, tmp_path):
    from tests.unit.test_report import PROBE, _chromium, find_chromium

    html = run_out / "e2e" / "report.html"
    md = run_out / "e2e" / "summary.md"
    card = run_out / "e2e" / "data_card.json"
    assert summary["report"] == {"html": str(html), "markdown": str(md), "data_card": str(card)}
    assert json.loads(card.read_text())["format"] == "dolly"  # the sample, detected
    assert "passes the gate" in md.read_text()
    text = html.read_text()
    assert all(c in text for c in summary["eval"]["categories"])
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not found on PATH (apt-get install chromium, or set CHROMIUM=/path)")
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</head>", PROBE + "</head>", 1))
    dom = _chromium(binary, tmp_path / "profile", "--dump-dom", probed.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert m, dom.stderr[-2000:]
    probe = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["errors"] == [] and len(probe["images"]) == 3 and min(probe["images"]) > 100


def test_wandb_tells_the_whole_story(summary, run_out):
    from tests.wandb_reader import read_runs

    runs = {r.job_type: r for r in read_runs(run_out / "wandb-home")}
    assert set(runs) == {"prepare-data", "fine-tune", "evaluate", "inference", "report"}
    assert len({r.group for r in runs.values()}) == 1 and runs["evaluate"].group
    ft = runs["fine-tune"]
    assert ft.config["max_steps"] == 30 and ft.config["lora_r"] == 16
    losses = ft.series("train/loss")
    assert len(losses) >= 5 and losses[-1] < losses[0]
    for key in ("train/learning_rate", "train/grad_norm", "train/tokens_per_second"):
        assert ft.series(key), key
    assert ft.series("eval/loss")
    model_refs = [a for a in ft.artifacts if a["type"] == "model"]
    assert model_refs and model_refs[0]["metadata"]["uri"].startswith("file://")
    datasets = {a["name"] for a in runs["prepare-data"].artifacts if a["type"] == "dataset"}
    assert {"train-split", "validation-split", "test-split", "rejected-split"} <= datasets
    table = runs["evaluate"].table("generations")
    assert len(table["data"]) == summary["test_rows"]
    assert runs["evaluate"].summary["tuned_loss"] == pytest.approx(summary["eval"]["tuned"]["loss"])


def test_every_tracked_step_reached_every_tracker(summary, run, run_out):
    tracking = summary["tracking"]
    assert tracking["trackers"] == ["wandb", "tensorboard", "mlflow"]
    for name in tracking["trackers"]:
        assert tracking["received"][name] == TRACKED_STEPS, tracking["steps"]
    logdir = run_out / "e2e" / "tensorboard"
    assert tracking["tensorboard_command"] == f"tensorboard --logdir {logdir}"
    assert tracking["tensorboard_command"] in run.stderr  # printed for the user
    assert tracking["mlflow_tracking_uri"] == f"sqlite:///{run_out / 'e2e' / 'mlflow' / 'mlflow.db'}"


def test_tensorboard_next_to_summary_has_the_whole_loss_curve(summary, run_out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = json.loads((Path(summary["artifacts"]["fine-tune.model"])
                          / "log_history.json").read_text())
    logged = [h["step"] for h in history if "loss" in h]
    assert logged[0] == 1 and logged[-1] == 30 and len(logged) == 7  # first step + every 5
    acc = EventAccumulator(str(run_out / "e2e" / "tensorboard" / "fine-tune"),
                           size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == logged
    assert {"train/learning_rate", "train/grad_norm", "train/tokens_per_second",
            "eval/loss"} <= set(acc.Tags()["scalars"])
    ev = EventAccumulator(str(run_out / "e2e" / "tensorboard" / "evaluate"))
    ev.Reload()
    [tuned] = ev.Scalars("summary/tuned_loss")
    assert tuned.value == pytest.approx(summary["eval"]["tuned"]["loss"], rel=1e-5)


def test_mlflow_store_next_to_summary_has_each_step_and_the_eval_metrics(summary, run_out):
    from mlflow import MlflowClient

    client = MlflowClient(summary["tracking"]["mlflow_tracking_uri"])
    exp = client.get_experiment_by_name("dolly-lora")
    runs = {r.data.tags["step"]: r for r in client.search_runs([exp.experiment_id])}
    assert sorted(runs) == sorted(TRACKED_STEPS)
    assert len({r.data.tags["pipeline_run"] for r in runs.values()}) == 1
    ev = runs["evaluate"]
    assert ev.data.metrics["tuned_loss"] == pytest.approx(summary["eval"]["tuned"]["loss"])
    assert ev.data.metrics["base_loss"] == pytest.approx(summary["eval"]["base"]["loss"])
    iv = summary["eval"]["interval"]
    assert ev.data.metrics["headline_improvement_low"] == pytest.approx(iv["improvement_low"])
    assert {a.path for a in client.list_artifacts(ev.info.run_id)} >= {"generations.json",
                                                                         "categories.json"}
    ft = runs["fine-tune"]
    losses = client.get_metric_history(ft.info.run_id, "loss")
    assert sorted({m.step for m in losses}) == [1, 5, 10, 15, 20, 25, 30]
    adapter = {a.path for a in client.list_artifacts(ft.info.run_id, "lora-adapter")}
    assert "lora-adapter/adapter_model.safetensors" in adapter
