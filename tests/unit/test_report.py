"""The run report from synthetic run data: content, self-containment, and a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from components.common.config import EvalConfig
from components.evaluate.evaluate import by_category, compare
from components.report.report import (
    collect,
    render_html,
    render_markdown,
    smoothed,
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
    results = {
        "base": {"loss": 3.1, "perplexity": 22.2, "rougeL": 0.0, "exact_match": 0.0},
        "tuned": {"loss": 2.6, "perplexity": 13.5, "rougeL": 0.5, "exact_match": 1.0},
        "rows": rows, "n_rows": len(rows), "categories": by_category(rows, cfg),
        "headline": compare(rows, cfg), "config": cfg.model_dump(),
    }
    (d / "gen.json").write_text(json.dumps(results))
    kept = [{"id": i, "category": CATS[i % 5], "num_tokens": 40 + 7 * i} for i in range(50)]
    splits = {"train": kept[:40], "validation": kept[40:45], "test": kept[45:],
              "rejected": [{"row": 99, "reason": "too long: 900 tokens > max_seq_len 512"},
                           {"row": 7, "reason": "duplicate of row 3"}]}
    paths = {n: str(write_jsonl(d / f"{n}.jsonl", r)) for n, r in splits.items()}
    model = d / "model"
    model.mkdir()
    hist = [{"loss": 3.0 - 0.1 * s, "step": s} for s in range(1, 11)] + [{"eval_loss": 2.7, "step": 10}]
    (model / "log_history.json").write_text(json.dumps(hist))
    (model / "training_config.json").write_text(json.dumps({"base_model": "tiny", "lora_r": 16}))
    write_jsonl(d / "pred.jsonl", [{"prompt": "p", "response": "r", "completion_tokens": 3,
                                    "latency_s": 0.5}])
    data = collect(
        splits=paths, split_meta={"source_rows": 52, "step_seconds": 2.0, "config": {"dataset": "x"}},
        model_dir=str(model), model_meta={"step_seconds": 3600.0, "device": "cpu",
                                         "wandb_url": "https://wandb.ai/e/p/runs/abc"},
        eval_path=str(d / "gen.json"), eval_meta={"step_seconds": 1800.0},
        predictions_path=str(d / "pred.jsonl"),
        predictions_meta={"step_seconds": 1800.0, "tokens_per_second": 6.0},
        gpu_hourly_usd=1.0, run_id="run-7",
    )
    write_report(data, str(d / "report.html"), str(d / "summary.md"))
    return {"data": data, "html": d / "report.html", "md": d / "summary.md"}


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
    assert data["inference"]["rows"] == 1 and data["wandb"]["fine-tune"] == "u"


def test_report_data_comes_from_the_run(run_data):
    data = run_data["data"]
    assert data["headline"]["tuned_better"] is True
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
    empty = {**run_data["data"], "results": {}, "headline": {}, "categories": {}, "samples": []}
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
  out.textContent = JSON.stringify({images: imgs, errors: window.__errors,
                                    title: document.title});
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


def test_report_renders_in_headless_chromium(run_data, tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not found on PATH (apt-get install chromium, or set CHROMIUM=/path)")
    html = run_data["html"].read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</head>", PROBE + "</head>", 1))

    dom = _chromium(binary, tmp_path / "profile-dom", "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert m, "the page never fired its load event:\n" + dom.stdout[-2000:]
    probe = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
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
