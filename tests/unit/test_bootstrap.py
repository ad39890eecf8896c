"""The paired bootstrap: right centre, honest width, pairing matters, gate semantics."""

import numpy as np
import pytest

from components.common.config import EvalConfig, build
from components.common.errors import InputError
from components.evaluate.bootstrap import paired_bootstrap
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
