"""The run report from synthetic run data: content, self-containment, and a real browser."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from html import escape
from pathlib import Path

import numpy as np
import pytest

from components.common.config import EvalConfig
from components.common.results import Evaluation, Interval, PreparedData, Scores, TrainMetrics
from components.common.trials import Choice, TrialScores, choose, to_json
from components.evaluate.evaluate import by_category, compare
from components.report.report import (
    _scores,
    collect,
    fig_trial_curves,
    render_html,
    render_markdown,
    smoothed,
    trial_rows,
    verdict,
    verdict_class,
    write_report,
)
from tests.conftest import write_jsonl

CATS = ["brainstorming", "classification", "closed_qa", "open_qa", "summarization"]
NASTY = "<script>alert('x')</script> & friends"


def _eval_rows(n: int = 30) -> list[dict]:
    rows = []
    for i in range(n):
        cat = CATS[i % len(CATS)]
        row = {"id": i, "category": cat, "instruction": f"Question {i}?" if i else NASTY,
               "reference": f"answer {i}", "generation_base": "word salad", "generation_tuned": f"answer {i}",
               "loss_base": 3.0 + (i % 3) * 0.1, "loss_tuned": 2.5 + (i % 3) * 0.1,
               "tokens_base": 10 + i, "tokens_tuned": 10 + i, "rougeL_base": 0.0, "rougeL_tuned": 0.5}
        if cat in ("classification", "closed_qa"):
            row.update(exact_match_base=0.0, exact_match_tuned=1.0)
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def run_data(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("run")
    rows = _eval_rows()
    cfg = EvalConfig(bootstrap_samples=200)
    Evaluation(
        base=Scores(loss=3.1, perplexity=22.2, rougeL=0.0, exact_match=0.0),
        tuned=Scores(loss=2.6, perplexity=13.5, rougeL=0.5, exact_match=1.0),
        rows=rows, n_rows=len(rows), categories=by_category(rows, cfg),
        headline=compare(rows, cfg), config=cfg.model_dump(),
    ).write(d / "gen.json")
    kept = [{"id": i, "category": CATS[i % 5], "num_tokens": 40 + 7 * i} for i in range(50)]
    splits = {"train": kept[:40], "validation": kept[40:45], "test": kept[45:],
              "rejected": [{"row": 99, "reason": "too long: 900 tokens > max_seq_len 512"},
                           {"row": 7, "reason": "duplicate of row 3"}]}
    paths = {n: str(write_jsonl(d / f"{n}.jsonl", r)) for n, r in splits.items()}
    model = d / "model"
    model.mkdir()
    hist = [{"loss": 3.0 - 0.1 * s, "step": s} for s in range(1, 11)] + [{"eval_loss": 2.7, "step": 10}]
    (model / "log_history.json").write_text(json.dumps(hist))
    (model / "training_config.json").write_text(json.dumps({"base_model": "tiny", "lora_r": 16,
                                                            "seed": 42.0, "max_steps": 60.0}))
    write_jsonl(d / "pred.jsonl", [{"prompt": "p", "response": "r", "completion_tokens": 3,
                                    "latency_s": 0.5}])
    def collected(**extra):
        return collect(
            splits=paths, split_meta={"source_rows": 52, "step_seconds": 2.0,
                                      "config": {"dataset": "x"}},
            model_dir=str(model), model_meta={"step_seconds": 3600.0, "device": "cuda",
                                             "wandb_url": "https://wandb.ai/e/p/runs/abc"},
            eval_path=str(d / "gen.json"), eval_meta={"step_seconds": 1800.0},
            predictions_path=str(d / "pred.jsonl"),
            predictions_meta={"step_seconds": 1800.0, "tokens_per_second": 6.0},
            gpu_hourly_usd=1.0, run_id="run-7", **extra,
        )

    data = collect(
        splits=paths, split_meta={"source_rows": 52, "step_seconds": 2.0, "config": {"dataset": "x"}},
        model_dir=str(model), model_meta={"step_seconds": 3600.0, "device": "cuda",
                                         "wandb_url": "https://wandb.ai/e/p/runs/abc"},
        eval_path=str(d / "gen.json"), eval_meta={"step_seconds": 1800.0},
        predictions_path=str(d / "pred.jsonl"),
        predictions_meta={"step_seconds": 1800.0, "tokens_per_second": 6.0},
        gpu_hourly_usd=1.0, run_id="run-7",
    )
    write_report(data, str(d / "report.html"), str(d / "summary.md"))
    return {"data": data, "html": d / "report.html", "md": d / "summary.md", "collect": collected}


def test_gpu_step_times_come_from_their_files_not_metadata(run_data, tmp_path):
    """On Vertex the GPU steps are custom jobs whose artifact metadata never arrives: the
    report reads their seconds from the files they wrote."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "metrics.json").write_text(json.dumps({"step_seconds": 1200.0, "wandb_url": "u"}))
    results = {"step_seconds": 300.0}
    (tmp_path / "gen.json").write_text(json.dumps(results))
    preds = tmp_path / "predictions"
    preds.mkdir()
    write_jsonl(preds / "predictions.jsonl", [{"prompt": "p", "response": "r"}])
    (preds / "summary.json").write_text(json.dumps({"step_seconds": 60.0}))
    data = collect(
        splits={}, split_meta={"step_seconds": 5.0}, model_dir=str(model), model_meta={},
        eval_path=str(tmp_path / "gen.json"), eval_meta={}, predictions_path=str(preds),
        predictions_meta={}, gpu_hourly_usd=1.0,
    )
    seconds = {s["step"]: s["seconds"] for s in data["cost"]["steps"]}
    assert seconds == {"prepare-data": 5.0, "fine-tune": 1200.0, "evaluate": 300.0,
                       "inference": 60.0}
    assert data["inference"].rows == 1 and data["wandb"]["fine-tune"] == "u"


def test_report_data_comes_from_the_run(run_data):
    data = run_data["data"]
    assert data["headline"].tuned_better is True
    assert len(data["samples"]) == 12
    assert {s["category"] for s in data["samples"]} == set(CATS)  # every category shows
    assert data["data"]["rejected_by_reason"] == {"too long": 1, "duplicate": 1}
    assert data["data"]["split_rows"] == {"train": 40, "validation": 5, "test": 5}
    assert data["cost"]["gpu_seconds"] == 7200.0  # fine-tune + evaluate + inference, not prepare
    assert data["cost"]["gpu_cost_usd"] == pytest.approx(2.0)


def test_html_is_self_contained_and_escaped(run_data):
    html = run_data["html"].read_text()
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<script" not in html.replace("&lt;script&gt;", "")  # user text is escaped
    assert "&lt;script&gt;alert" in html
    assert not re.search(r'<link[^>]+href="http', html)
    for text in ("Fine-tuning helped", "closed_qa", "answer 7", "too long", "2.0000", "run-7"):
        assert text in html, text


def test_markdown_summary(run_data):
    md = run_data["md"].read_text()
    assert md.startswith("# Run run-7")
    assert "passes the gate" in md
    assert "| classification |" in md
    assert "[fine-tune](https://wandb.ai/e/p/runs/abc)" in md


def test_run_name_titles_the_report_with_the_job_name_beside_it(run_data):
    named = {**run_data["data"], "run_name": "nightly-42"}
    md = render_markdown(named)
    assert md.startswith("# Run nightly-42\n") and "Pipeline job `run-7`" in md
    html = render_html(named)
    assert "<h1>Fine-tuning report: nightly-42</h1>" in html and "Pipeline job run-7" in html
    assert run_data["data"]["run_name"] == ""  # no run_name in training_config.json


def test_smoothing_keeps_the_trend_and_damps_the_jitter():
    noisy = [3.0 - 0.05 * i + (0.3 if i % 2 else -0.3) for i in range(20)]
    smooth = smoothed(noisy)
    assert smooth[0] == noisy[0]  # debiased: no pull towards zero at the start
    jitter = lambda xs: sum(abs(b - a) for a, b in zip(xs, xs[1:], strict=False))  # noqa: E731
    assert jitter(smooth) < jitter(noisy) / 3
    assert smooth[-1] < smooth[0] - 0.5  # the downward trend survives


def test_empty_evaluation_still_renders(run_data):
    empty = {**run_data["data"], "results": None, "headline": None, "categories": {},
             "samples": []}
    assert "No evaluation results" in render_markdown(empty)


# ------------------------------------------------------------------ real browser


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


# Injected into a copy of the report only: records load errors and each image's decoded size.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(
  (e.target && e.target.tagName ? e.target.tagName + ' failed to load' : String(e.message))), true);
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => i.complete && i.naturalWidth > 0 ? i.naturalWidth : 0);
  const out = document.createElement('pre');
  out.id = 'probe';
  const trials = document.querySelectorAll('#trials-table tr').length;
  out.textContent = JSON.stringify({images: imgs, errors: window.__errors,
                                    title: document.title, trial_rows: trials});
  document.body.appendChild(out);
});
</script>"""


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args],
        capture_output=True, text=True, timeout=120,
    )


def _probe(binary: str, html: str, tmp_path: Path) -> dict:
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</head>", PROBE + "</head>", 1))
    dom = _chromium(binary, tmp_path / "profile-dom", "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert m, "the page never fired its load event:\n" + dom.stdout[-2000:]
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_sweep_report_renders_its_trials_in_headless_chromium(sweep_report, tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not found on PATH (apt-get install chromium, or set CHROMIUM=/path)")
    probe = _probe(binary, sweep_report["html"], tmp_path)
    assert probe["errors"] == []
    assert len(probe["images"]) == 4 and all(w > 100 for w in probe["images"]), probe
    assert probe["trial_rows"] == 1 + 3  # header + one row per trial


def test_report_renders_in_headless_chromium(run_data, tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not found on PATH (apt-get install chromium, or set CHROMIUM=/path)")
    probe = _probe(binary, run_data["html"].read_text(), tmp_path)
    assert probe["errors"] == []
    assert len(probe["images"]) == 3 and all(w > 100 for w in probe["images"]), probe
    assert probe["title"] == "Fine-tuning report run-7"

    shot = tmp_path / "report.png"
    res = _chromium(binary, tmp_path / "profile-shot", f"--screenshot={shot}",
                    "--window-size=1200,2400", "--hide-scrollbars", run_data["html"].as_uri())
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    if keep := os.environ.get("REPORT_SCREENSHOT"):  # to look at it: REPORT_SCREENSHOT=/tmp/r.png
        shutil.copyfile(shot, keep)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1100
    assert pixels.std() > 0.05, "the screenshot is blank"


# ------------------------------------------------------------------ what the report must say


def _results(rows: list[dict], cfg: EvalConfig) -> Evaluation:
    return Evaluation(base=Scores(loss=3.1, perplexity=22.2, rougeL=0.0),
                      tuned=Scores(loss=2.6, perplexity=13.5, rougeL=0.5),
                      rows=rows, n_rows=len(rows), categories=by_category(rows, cfg),
                      headline=compare(rows, cfg), config=cfg.model_dump())


def test_two_test_rows_never_pass_the_gate(tmp_path):
    """Two rows, both clearly better: the interval collapses to a point above 0, but the gate
    does not decide on two rows, says so, and register-model (behind the bool) never runs."""
    from components.evaluate.evaluate import gate_decision
    from components.report.report import verdict

    cfg = EvalConfig(bootstrap_samples=200)
    rows = _eval_rows(2)
    results = _results(rows, cfg)
    h = results.headline
    assert h.improvement_low > 0  # the bootstrap alone would have passed it
    assert h.enough_rows is False and h.tuned_better is False
    results.write(tmp_path / "gen.json")
    decision = gate_decision(str(tmp_path / "gen.json"))
    assert decision.tuned_better is False and decision.enough_rows is False
    assert decision.scalars["tuned_better"] == 0.0
    text = verdict(h)
    assert text.startswith("Too few test rows to decide (2 scored, `gate_min_rows` is 30)")
    assert "at least 30 (gate_min_rows)" in text and "nothing is registered" in text
    assert "passes the gate" not in text
    small = EvalConfig(bootstrap_samples=200, gate_min_rows=2)
    assert compare(rows, small).tuned_better is True  # the minimum is a parameter


def test_categories_under_the_minimum_are_grey_in_table_and_figure(run_data, monkeypatch):
    from components.report import report

    data = run_data["data"]  # 30 rows over 5 categories: 6 each, under gate_min_rows=30
    assert all(not c.headline.enough_rows for c in data["categories"].values())
    assert all(c.headline.improvement_low > 0 for c in data["categories"].values())
    html = run_data["html"].read_text()
    assert html.count('<tr class="few">') == len(CATS)
    assert "under 30 rows (gate_min_rows): too few to decide" in html
    figures: list = []
    monkeypatch.setattr(report, "_png", lambda fig: figures.append(fig) or "data:,")
    report.fig_categories(data["categories"], "loss")
    markers = [line for line in figures[0].axes[1].lines if line.get_marker() == "o"]
    assert len(markers) == len(CATS)
    assert {line.get_color() for line in markers} == {report.TOO_FEW_COLOR}
    assert {line.get_markerfacecolor() for line in markers} == {"white"}
    enough = dataclasses.replace(data["categories"]["closed_qa"].headline, enough_rows=True)
    assert report.interval_color(enough) == "#2ca02c"


def test_report_names_the_run_id_and_prints_integers_as_integers(run_data, tmp_path):
    from components.report.report import collect

    data = run_data["data"]
    assert data["config"]["training"]["seed"] == 42 and isinstance(
        data["config"]["training"]["seed"], int)
    html = run_data["html"].read_text()
    assert "<td>seed</td><td>42</td>" in html and "42.0" not in html
    named = collect(splits={}, split_meta={}, model_dir=str(run_data["html"].parent / "model"),
                    model_meta={}, eval_path=str(tmp_path / "none.json"), eval_meta={},
                    predictions_path=str(tmp_path / "none.jsonl"),
                    predictions_meta={}, gpu_hourly_usd=1.0, run_id="job-1", run_name="nightly")
    assert named["run_name"] == "nightly"
    assert render_markdown(named).startswith("# Run nightly\n")


def test_cpu_steps_are_not_gpu_machines_and_cost_nothing(run_data, tmp_path):
    from components.report.report import step_costs

    cost = step_costs({"prepare-data": 5.0, "fine-tune": 60.0, "evaluate": 30.0},
                      {"fine-tune", "evaluate"}, 0.85, {"fine-tune": "cpu", "evaluate": "cpu"})
    assert cost["gpu_seconds"] == 0 and cost["gpu_cost_usd"] == 0
    assert all(not s["gpu"] and s["cost_usd"] == 0 for s in cost["steps"])
    md = render_markdown({**run_data["data"], "cost": cost})
    assert "no step ran on a GPU machine" in md and "$" not in md.split("Time:")[1]
    html = render_html({**run_data["data"], "cost": cost})
    assert "CPU (no GPU here; not priced)" in html and "GPU machine</td>" not in html


def test_samples_show_the_instruction_with_its_context(run_data):
    data = run_data["data"]
    sample = {**data["samples"][1], "context": "Paris is the capital of France."}
    html = render_html({**data, "samples": [sample]})
    assert "Context:</span> Paris is the capital of France." in html


def test_overfitting_is_said_in_words():
    from components.report.report import overfitting

    train = [(s, 3.0 - 0.05 * s) for s in range(1, 61)]
    rising = [(20, 2.9), (40, 3.0), (60, 3.2)]
    text = overfitting(train, rising, TrainMetrics(epochs=9.06, train_rows=53, kept_step=20))
    assert text.startswith("Overfitting: validation loss rose from 2.900 at step 20 to 3.200 "
                           "at step 60 while training loss fell")
    assert "9.1 epochs over 53 training rows" in text and "from step 20" in text
    assert overfitting(train, [(20, 2.9), (40, 2.8), (60, 2.7)], TrainMetrics()) == ""
    assert overfitting(train, [(20, 2.9), (40, 2.905)], TrainMetrics()) == ""  # noise, not a rise


def test_a_selected_category_without_test_rows_is_said(run_data):
    data = {**run_data["data"]}
    data["data"] = {**data["data"], "categories_without_test_rows": ["closed_qa"]}
    assert "No test rows for the selected category closed_qa" in render_markdown(data)
    assert "No test rows for the selected category closed_qa" in render_html(data)


def test_rejected_counts_agree_between_metadata_and_report(tmp_path, dolly_rows, tokenizer):
    """prepare-data's metadata and the report count the same rejected rows the same way."""
    from components.common.config import DataConfig
    from components.prepare_data.prepare import prepare
    from components.prepare_data.prepare import write_jsonl as write
    from components.report.report import data_summary

    rows = [*dolly_rows[:40], dolly_rows[2], dolly_rows[7], {"instruction": 1}]
    src = write_jsonl(tmp_path / "src.jsonl", rows)
    p = prepare(DataConfig(dataset=str(src), base_model="embedded://tiny-gemma3",
                           max_seq_len=256, max_bad_row_fraction=0.1), tokenizer)
    paths = {}
    for name, split in {**p.splits, "rejected": p.rejected}.items():
        paths[name] = str(tmp_path / f"{name}.jsonl")
        write(paths[name], split)
    summary = data_summary(paths, PreparedData.read(p.stats))
    assert summary["rejected_rows"] == p.stats["rejected_rows"]
    assert summary["rejected_by_reason"] == p.stats["rejected_by_reason"]
    assert summary["rejected_by_reason"]["duplicate"] == 2


def _helped_on_loss() -> Interval:
    return Interval(metric="loss", higher_is_better=False, improvement=0.48, improvement_low=0.39,
                    improvement_high=0.58, threshold=0.0, min_rows=30, enough_rows=True,
                    tuned_better=True, rows=200)


def test_verdict_names_the_one_metric_that_moved_the_other_way():
    text = verdict(_helped_on_loss(), Scores(loss=3.0, rougeL=0.065),
                   Scores(loss=2.52, rougeL=0.040))
    assert text.startswith("Fine-tuning helped: loss improved by 0.480")
    assert text.endswith("But ROUGE-L fell 0.065 -> 0.040: the other way.")


def test_verdict_says_nothing_more_when_every_metric_agrees():
    text = verdict(_helped_on_loss(), Scores(loss=3.0, rougeL=0.040, exact_match=0.1),
                   Scores(loss=2.52, rougeL=0.065, exact_match=0.2))
    assert text == verdict(_helped_on_loss()) and "other way" not in text
    # a change under the shown 3 decimals is not a move
    assert "other way" not in verdict(_helped_on_loss(), Scores(loss=3.0, rougeL=0.0651),
                                      Scores(loss=2.5, rougeL=0.0649))


def test_verdict_names_several_and_the_gate_is_unchanged():
    h = _helped_on_loss()
    text = verdict(h, Scores(loss=3.0, rougeL=0.065, exact_match=0.2),
                   Scores(loss=2.52, rougeL=0.040, exact_match=0.1))
    assert "But ROUGE-L fell 0.065 -> 0.040 and exact match fell 0.200 -> 0.100: the other way." in text
    assert h.tuned_better and verdict_class(h) == verdict_class(_helped_on_loss())
    # headline ROUGE-L worse, loss better: loss is the one that moved the other way
    worse = Interval(metric="rougeL", higher_is_better=True, improvement=-0.02,
                     improvement_low=-0.04, improvement_high=0.0, threshold=0.0, rows=200)
    text = verdict(worse, Scores(loss=3.0, rougeL=0.065), Scores(loss=2.5, rougeL=0.045))
    assert text.startswith("Fine-tuning is not shown to help on rougeL")
    assert text.endswith("But loss fell 3.000 -> 2.500: the other way.")


def test_report_verdict_names_what_moved_the_other_way(tmp_path):
    rows = _eval_rows()
    for r in rows:
        r["rougeL_tuned"] = 0.0
        r["rougeL_base"] = 0.5
    cfg = EvalConfig(bootstrap_samples=200)
    ev = Evaluation(base=Scores(loss=3.1, rougeL=0.5), tuned=Scores(loss=2.6, rougeL=0.0),
                    rows=rows, n_rows=len(rows), headline=compare(rows, cfg))
    data = {"results": ev, "headline": ev.headline}
    assert "But ROUGE-L fell 0.500 -> 0.000: the other way." in verdict(ev.headline, *_scores(data))


# ------------------------------------------------------------------ a sweep's trials


def _sweep_choice() -> Choice:
    rng = np.random.default_rng(5)
    tokens = [int(t) for t in rng.integers(5, 40, 60)]
    hard = rng.normal(2.3, 0.5, 60)

    def t(name, r, shift, noise, seed, curve):
        own = np.random.default_rng(seed).normal(0, noise, 60)
        return TrialScores(name, {"lora_r": r}, list((hard + shift + own) * tokens), tokens,
                           train_seconds=100.0 + r, tokens_per_second=1500.0 + r,
                           cost_usd=0.01 * r, curve=curve)

    return choose([t("t0", 8, 0.01, 0.4, 1, [(10, 2.9), (20, 2.5)]),
                   t("t1", 16, 0.5, 0.05, 2, [(10, 3.2), (20, 2.9)]),
                   t("t2", 32, 0.0, 0.4, 3, [(10, 2.8), (20, 2.4)])], samples=300)


@pytest.fixture(scope="module")
def sweep_report(run_data, tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("sweep")
    choice = _sweep_choice()
    (d / "sweep").mkdir()
    (d / "sweep" / "sweep.json").write_text(to_json(choice))
    data = run_data["collect"](sweep_path=str(d / "sweep"))
    write_report(data, str(d / "report.html"), str(d / "summary.md"))
    return {"choice": choice, "data": data, "html": (d / "report.html").read_text(),
            "md": (d / "summary.md").read_text()}


def test_sweep_report_shows_trials_plot_winner_and_the_test_split_sentence(sweep_report):
    choice, html, md = sweep_report["choice"], sweep_report["html"], sweep_report["md"]
    assert choice.winner == "t0" and "indistinguishable from the best" in choice.why
    assert sweep_report["data"]["sweep"] == choice
    for name, settings in (("t0", "lora_r=8"), ("t1", "lora_r=16"), ("t2", "lora_r=32")):
        assert re.search(rf"<td>{name}( \(chosen\))?</td><td>{settings}</td>", html), name
        assert f"| {settings} |" in md
    t1 = choice.trial("t1")
    d = t1["diff_vs_best"]
    assert f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" in html
    assert "$0.16" in html and "$0.32" in md  # cost per trial
    assert re.search(r'<img id="fig-trials"[^>]*src="data:image/png;base64,', html)
    assert "<td>t0 (chosen)</td>" in html and "**t0** (chosen)" in md
    assert escape(choice.why) in html and choice.why in md
    sentence = "The choice of trial did not see the test split: it read its 60 validation rows only"
    assert sentence in html and sentence in md


def test_without_a_sweep_the_report_is_unchanged(run_data, tmp_path):
    data = run_data["collect"](sweep_path="")
    assert data["sweep"] is None
    assert "trials-table" not in render_html(data) and "## Trials" not in render_markdown(data)
    assert render_markdown(data) == run_data["md"].read_text()
    missing = run_data["collect"](sweep_path=str(tmp_path / "nothing-here"))
    assert missing["sweep"] is None


def test_trial_curves_plot_every_trial():
    choice = _sweep_choice()
    assert fig_trial_curves(choice).startswith("data:image/png;base64,")
    rows = trial_rows(choice)
    assert [r["chosen"] for r in rows] == ["chosen", "", ""] and rows[2]["diff"] == "best"
