"""Metric arithmetic on plain numbers."""

import math

import pytest

from components.evaluate.metrics import perplexity, rouge_l, token_weighted_loss


def test_loss_is_weighted_by_tokens():
    assert token_weighted_loss([(10.0, 10), (2.0, 1)]) == pytest.approx(12 / 11)
    with pytest.raises(ValueError):
        token_weighted_loss([(0.0, 0)])


def test_perplexity_is_exp_of_loss():
    assert perplexity(math.log(50)) == pytest.approx(50)


def test_rouge_l_uses_rouge_score():
    scores = rouge_l(["the cat sat on the mat", "dogs"], ["the cat sat on a mat", "a cat"])
    assert scores[0] == pytest.approx(5 / 6)
    assert scores[1] == 0.0
    assert rouge_l(["Running fast"], ["run fast"])[0] == 1.0  # stemmed
