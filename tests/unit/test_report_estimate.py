"""The report puts submit's pre-run cost estimate next to what the run took."""

from __future__ import annotations

import json

from components.common.results import TrainMetrics
from components.report import estimate
from components.report.report import render_html, render_markdown
from tests.unit.test_report import run_data  # noqa: F401 - fixture

ESTIMATE = {"profile": "default", "train_tokens": 2_000_000, "train_tokens_per_s": 7563.0,
            "train_seconds": 264.4, "gpu_seconds": 3600.0, "usd": 0.8536,
            "throughput_basis": "estimated (planning/throughput.py): ..."}


def test_estimate_and_actual_side_by_side_with_their_ratio():
    training = TrainMetrics(train_tokens=2_200_000, tokens_per_second=6000.0, train_seconds=366.7)
    cost = {"gpu_seconds": 7200.0, "gpu_cost_usd": 1.7072}
    rows = {r["what"]: r for r in estimate.compare(ESTIMATE, training, cost)}
    assert rows["training tokens"]["ratio"] == 1.1
    assert rows["GPU seconds, all GPU steps"] == {
        "what": "GPU seconds, all GPU steps", "estimated": 3600.0, "actual": 7200.0, "ratio": 2.0}
    assert rows["cost (USD)"]["ratio"] == 2.0
    assert estimate.compare({}, training, cost) == []
    assert estimate.parse("") == {} and estimate.parse("not json") == {}


def test_the_report_shows_the_table_only_with_an_estimate(run_data):  # noqa: F811
    data = dict(run_data["data"])
    assert "Estimate before the run" not in render_markdown(data)
    data["estimate"] = {"profile": "default", "basis": ESTIMATE["throughput_basis"],
                        "rows": estimate.compare(ESTIMATE, data["training"], data["cost"])}
    md = render_markdown(data)
    assert "Estimate before the run (profile default) vs actual" in md
    assert "| GPU seconds, all GPU steps | 3600.000 | 7200.000 | 2.000 |" in md
    html = render_html(data)
    assert 'id="estimate"' in html and "actual / estimated" in html
    assert json.dumps(ESTIMATE)  # what submit sends as the cost_estimate parameter


def test_collect_reads_the_cost_estimate_parameter(tmp_path):
    from components.report.report import collect

    model = tmp_path / "model"
    model.mkdir()
    (model / "metrics.json").write_text(json.dumps({"step_seconds": 1200.0,
                                                    "train_tokens": 2_000_000}))
    data = collect(splits={}, split_meta={}, model_dir=str(model), model_meta={},
                   eval_path=str(tmp_path / "none.json"), eval_meta={},
                   predictions_path=str(tmp_path / "none.jsonl"), predictions_meta={},
                   gpu_hourly_usd=1.0, cost_estimate=json.dumps(ESTIMATE))
    rows = {r["what"]: r for r in data["estimate"]["rows"]}
    assert data["estimate"]["profile"] == "default"
    assert rows["training tokens"]["ratio"] == 1.0
