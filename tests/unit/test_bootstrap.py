"""The paired bootstrap: right centre, honest width, pairing matters, gate semantics."""

import numpy as np
import pytest

from components.common.bootstrap import paired_bootstrap
from components.common.config import EvalConfig, build
from components.common.errors import InputError
from components.evaluate.metrics import exact_match, normalize_answer


def test_clear_improvement_excludes_zero():
    rng = np.random.default_rng(1)
    base = rng.normal(2.0, 0.5, 200)
    tuned = base - 0.3 + rng.normal(0, 0.05, 200)
    iv = paired_bootstrap(base, tuned, samples=1000)
    assert iv.estimate == pytest.approx(-0.3, abs=0.02)
    assert iv.low < iv.estimate < iv.high < 0
    assert iv.rows == 200 and iv.samples == 1000


def test_no_difference_straddles_zero():
    rng = np.random.default_rng(2)
    base = rng.normal(0.3, 0.2, 150)
    tuned = base + rng.normal(0, 0.2, 150)
    iv = paired_bootstrap(base, tuned, samples=1000)
    assert iv.low < 0 < iv.high


def test_pairing_narrows_the_interval():
    """Rows vary a lot, the per-row gain is steady: the paired interval must be tight."""
    rng = np.random.default_rng(3)
    base = rng.normal(0, 5, 100)
    tuned = base + 0.5
    iv = paired_bootstrap(base, tuned, samples=500)
    assert iv.low == pytest.approx(0.5) and iv.high == pytest.approx(0.5)


def test_weights_give_the_token_weighted_mean():
    iv = paired_bootstrap([1.0, 1.0], [0.0, 2.0], weights=[3, 1], samples=200)
    assert iv.estimate == pytest.approx((3 * -1 + 1 * 1) / 4)


def test_same_seed_same_interval():
    a = paired_bootstrap([1, 2, 3, 4], [2, 2, 3, 5], samples=300, seed=7)
    b = paired_bootstrap([1, 2, 3, 4], [2, 2, 3, 5], samples=300, seed=7)
    assert a == b


def test_bad_input():
    with pytest.raises(ValueError):
        paired_bootstrap([], [])
    with pytest.raises(ValueError):
        paired_bootstrap([1, 2], [1])


def test_exact_match_normalises():
    assert normalize_answer("The  Answer, is: Paris!") == "answer is paris"
    assert exact_match("paris", "Paris.") == 1.0
    assert exact_match("Paris, France", "Paris") == 0.0


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"headline_metric": "rougeL", "gate_threshold": 1.5}, "outside the range of a rougeL"),
        ({"headline_metric": "loss", "gate_threshold": -0.1}, "outside the range of a loss"),
        ({"bootstrap_samples": 5}, "bootstrap_samples"),
        ({"headline_metric": "bleu"}, "headline_metric"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_eval_settings_out_of_range_are_clear_errors(values, match):
    with pytest.raises(InputError, match=match):
        build(EvalConfig, values)


def test_studentized_interval_reaches_along_the_long_tail():
    """Right-skewed per-row differences: the interval must stretch further on the long side
    than the percentile interval does (that stretch is what keeps skewed no-effect runs from
    passing the gate), and stay centred on the same estimate."""
    rng = np.random.default_rng(11)
    base = rng.uniform(2, 4, 30)
    tuned = base + rng.exponential(1.0, 30) - 1.0
    t = paired_bootstrap(base, tuned, samples=2000)
    p = paired_bootstrap(base, tuned, samples=2000, method="percentile")
    assert t.estimate == p.estimate
    assert t.high - t.estimate > p.high - p.estimate
    assert t.low < t.estimate < t.high


def test_studentized_gate_passes_skewed_no_effect_runs_less_often():
    """Seeded no-effect draws at the gate's 30 rows, equal weights: the default interval passes
    at most 5% (nominal 2.5%) and fewer than the percentile interval on the same draws."""
    rng = np.random.default_rng(5)
    passes = {"studentized": 0, "percentile": 0}
    for trial in range(300):
        diff = rng.exponential(1.0, 30) - 1.0
        base = rng.uniform(2, 4, 30)
        for method in passes:
            iv = paired_bootstrap(base, base + diff, samples=400, seed=trial, method=method)
            passes[method] += -iv.high > 0  # loss: improvement = base - tuned
    assert passes["studentized"] <= 0.05 * 300
    assert passes["studentized"] < passes["percentile"], passes
