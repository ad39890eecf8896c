"""Paired bootstrap over test rows: is tuned really better than base, or is it noise?

Why paired: base and tuned answer the same rows, so resampling rows (not models) keeps each
row's pair together and cancels the row-to-row difficulty that dominates the variance. The
statistic is a weighted mean (weights = response tokens for loss, 1 for ROUGE-L), so the
interval is for exactly the number the report shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Difference:
    """`estimate` and [`low`, `high`] of tuned − base (in the metric's units): the statistic,
    before `evaluate.compare` orients it as an improvement (`results.Interval`)."""

    estimate: float
    low: float
    high: float
    confidence: float
    samples: int
    rows: int


def paired_bootstrap(
    base: Sequence[float],
    tuned: Sequence[float],
    weights: Sequence[float] | None = None,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """Percentile interval of weighted-mean(tuned) − weighted-mean(base) over resampled rows."""
    b, t = np.asarray(base, dtype=float), np.asarray(tuned, dtype=float)
    if b.shape != t.shape or b.ndim != 1:
        raise ValueError(f"base and tuned must be equal-length 1-D ({b.shape} vs {t.shape})")
    if b.size == 0:
        raise ValueError("no rows to bootstrap")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    w = np.ones_like(b) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != b.shape or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per row, and not all zero")
    diff = t - b
    estimate = float((w * diff).sum() / w.sum())
    rng = np.random.default_rng(seed)
    n = b.size
    # Each resample as row counts: stat = sum(count * w * diff) / sum(count * w).
    stats = np.empty(samples)
    chunk = max(1, 2_000_000 // n)  # bounds memory at ~16 MB whatever the test size
    for start in range(0, samples, chunk):
        k = min(chunk, samples - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=k)
        num, den = counts @ (w * diff), counts @ w
        stats[start : start + k] = np.divide(num, den, out=np.zeros(k), where=den > 0)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return Difference(estimate, float(low), float(high), confidence, samples, n)
