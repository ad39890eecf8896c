"""Evaluate end to end on the tiny model: per-category metrics, the interval, the gate, W&B."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.common.config import DataConfig, EvalConfig
from components.common.errors import InputError
from components.common.jsonl import write_jsonl
from components.common.results import Evaluation
from components.evaluate import evaluate as ev
from components.prepare_data.prepare import prepare


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_model_ref) -> Path:
    """A random (non-zero) LoRA adapter, so tuned differs from base without training."""
    import torch
    from peft import LoraConfig, get_peft_model

    from components.common.modeling import load_model, load_tokenizer

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("adapter")
    model = get_peft_model(
        load_model(tiny_model_ref, device="cpu"),
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"),
    )
    model.save_pretrained(out)
    load_tokenizer(tiny_model_ref).save_pretrained(out)
    (out / "training_config.json").write_text(json.dumps({"base_model": tiny_model_ref}))
    return out


@pytest.fixture(scope="module")
def test_file(tmp_path_factory, tokenizer) -> Path:
    cfg = DataConfig(dataset="embedded://dolly-15k-sample.jsonl",
                     base_model="embedded://tiny-gemma3", max_seq_len=256, test_fraction=0.2)
    rows = prepare(cfg, tokenizer).splits["test"]
    path = tmp_path_factory.mktemp("data") / "test.jsonl"
    write_jsonl(path, rows[:12])
    return path


@pytest.fixture(scope="module")
def wandb_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wandb-eval")


@pytest.fixture(scope="module")
def result(adapter, test_file, tmp_path_factory, wandb_dir):
    """One evaluation for the module (module fixtures run outside the per-test W&B dir)."""
    out = tmp_path_factory.mktemp("eval") / "generations.json"
    cfg = EvalConfig(max_new_tokens=6, generation_batch_size=6, bootstrap_samples=300, seed=3,
                     wandb_project="test-project")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR",
                    "WANDB_CONFIG_DIR"):
            mp.setenv(var, str(wandb_dir))
        mp.setenv("WANDB_MODE", "offline")
        import wandb

        wandb.teardown()  # an earlier test's wandb session would keep its own directory
        meta = ev.run_evaluate(cfg, base="", test=str(test_file), model=str(adapter),
                               generations=str(out), run_id="grp-1")
        results = Evaluation.load(out)
        scalars = results.scalars()
        assert meta["generations"].rows == int(scalars["test_rows"])
        import wandb

        wandb.teardown()
    return scalars, results


def test_metrics_per_category_for_base_and_tuned(result):
    scalars, res = result
    cats = res.categories
    assert sum(c.rows for c in cats.values()) == res.n_rows == 12
    for cat, c in cats.items():
        for m in ("base", "tuned"):
            scores = getattr(c, m).values()
            assert {"loss", "perplexity", "rougeL"} <= set(scores)
            assert ("exact_match" in scores) == (cat in {"classification", "closed_qa"})
        assert c.headline.improvement_low <= c.headline.improvement_high
        assert scalars[f"{cat}/tuned_loss"] == pytest.approx(c.tuned.loss)
    assert res.base.loss != res.tuned.loss


def test_headline_interval_and_gate_agree(result):
    scalars, res = result
    h = res.headline
    assert h.metric == "loss" and h.higher_is_better is False
    # one orientation: > 0 means tuned is better, so for loss it is base − tuned
    assert h.improvement == pytest.approx(res.base.loss - res.tuned.loss, rel=1e-6)
    assert h.improvement_low <= h.improvement <= h.improvement_high
    assert scalars["headline_improvement_low"] == pytest.approx(h.improvement_low)
    # 12 test rows: under gate_min_rows, so the gate does not decide whatever the interval says
    assert h.rows == 12 and h.min_rows == 30 and h.enough_rows is False
    assert h.tuned_better is False
    assert scalars["tuned_better"] == 0.0 and scalars["enough_test_rows"] == 0.0
    assert all(not c.headline.enough_rows for c in res.categories.values())


def test_results_keep_the_context_and_the_device(result):
    _, res = result
    assert all("context" in r for r in res.rows) and res.device == "cpu"


def test_evaluation_is_logged_to_wandb_offline(result, wandb_dir):
    from tests.wandb_reader import read_runs

    runs = [r for r in read_runs(wandb_dir) if r.job_type == "evaluate"]
    assert len(runs) == 1
    run = runs[0]
    assert run.group == "grp-1"
    assert run.config["headline_metric"] == "loss" and run.config["max_new_tokens"] == 6
    assert run.summary["tuned_loss"] == pytest.approx(result[0]["tuned_loss"])
    table = run.table("generations")
    assert len(table["data"]) == 12
    assert {"reference", "base", "tuned"} <= set(table["columns"])
    assert len(run.table("categories")["data"]) == len(result[1].categories)


@pytest.mark.parametrize(
    ("params", "match"),
    [({"temperature": 9.0}, "temperature"), ({"top_p": 1.5}, "top_p"),
     ({"headline_metric": "rougeL", "gate_threshold": 2.0}, "gate_threshold")],
)
def test_bad_settings_fail_before_any_model_loads(monkeypatch, tmp_path, test_file, params, match):
    def boom(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(ev, "load_base_and_adapter", boom)
    with pytest.raises(InputError, match=match):
        # As the component runs it: the config is built from the task's parameters first.
        from types import SimpleNamespace

        from components.common.step import StepIO, call

        arts = {"base": "b", "test": str(test_file), "model": "no-adapter",
                "generations": str(tmp_path / "x" / "y" / "g.json")}
        arts = {k: SimpleNamespace(path=v, metadata={}) for k, v in arts.items()}
        io = StepIO(inputs={k: arts[k] for k in ("base", "test", "model")},
                    outputs={"generations": arts["generations"]}, run_id_from="generations")
        call(ev.run_evaluate, {**arts, **params, "required_accelerator": ""}, io)


def test_evaluate_says_how_many_rows_are_done(adapter, test_file, capsys):
    """Base's rows then tuned's, one progress line a batch here (every=0 s), the last 2n/2n."""
    from components.common.jsonl import read_rows
    from components.common.progress import ENV_EVERY

    rows = read_rows(test_file)[:4]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_EVERY, "0")
        ev.evaluate(str(adapter), rows, EvalConfig(max_new_tokens=2, generation_batch_size=2,
                                                   bootstrap_samples=100))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("progress ")]
    assert [ln.split(" eta ")[0] for ln in lines] == [
        f"progress evaluate rows {n}/8" for n in (2, 4, 6, 8)]
    assert lines[0].endswith("(base model)") and lines[-1].endswith("eta 0s (tuned model)")
