"""Metric arithmetic, kept apart from models so it is tested with plain numbers.

ROUGE-L comes from Google's `rouge-score` (what `evaluate`'s "rouge" wraps; `evaluate.load` needs
the network, `rouge_score` does not).
"""

from __future__ import annotations

import math


def token_weighted_loss(per_row: list[tuple[float, int]]) -> float:
    """Mean NLL per response token over all rows (rows weigh by their token count)."""
    total = sum(n for _, n in per_row)
    if total == 0:
        raise ValueError("no response tokens to score")
    return sum(s for s, _ in per_row) / total


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0))


def rouge_l(predictions: list[str], references: list[str]) -> list[float]:
    """Per-row ROUGE-L F1 (stemmed), as the `evaluate` library reports it."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    pairs = zip(predictions, references, strict=True)
    return [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in pairs]


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")
