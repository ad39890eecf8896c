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


def test_what_was_spent_is_each_steps_measured_seconds_at_its_own_machines_price():
    from components.report.report import step_costs

    est = {**ESTIMATE, "usd": 2.0, "worst_usd": 9.0, "steps": {
        "fine-tune": {"usd_per_hour": 4.0, "run_seconds": 1500.0, "startup_seconds": 300.0},
        "evaluate": {"usd_per_hour": 1.0, "run_seconds": 600.0, "startup_seconds": 300.0},
        "inference": {"usd_per_hour": 1.0, "run_seconds": 300.0, "startup_seconds": 300.0}}}
    cost = step_costs({"prepare-data": 50.0, "fine-tune": 3600.0, "evaluate": 1800.0,
                       "inference": 900.0}, {"fine-tune", "evaluate", "inference"}, 0.5,
                      prices=estimate.step_prices(est))
    # 1 h x $4 + 0.5 h x $1 + 0.25 h x $1; prepare-data is a CPU step, not counted
    assert cost["gpu_cost_usd"] == 4.75
    training = TrainMetrics(train_tokens=2_000_000, tokens_per_second=6000.0, train_seconds=3000)
    rows = {r["what"]: r for r in estimate.compare(est, training, cost)}
    assert rows["fine-tune seconds (start-up included)"] == {
        "what": "fine-tune seconds (start-up included)", "estimated": 1800.0, "actual": 3600.0,
        "ratio": 2.0}
    assert rows["cost (USD)"]["actual"] == 4.75 and rows["cost (USD)"]["ratio"] == 2.375
    assert rows["worst case (USD): every step to its timeout"]["estimated"] == 9.0
