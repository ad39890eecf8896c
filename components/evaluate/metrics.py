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


# Categories whose Dolly answers are short enough that an exact answer is meaningful.
EXACT_MATCH_CATEGORIES: frozenset[str] = frozenset({"classification", "closed_qa"})


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    import re
    import string

    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised answers are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))
