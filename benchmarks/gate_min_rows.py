"""How many test rows the gate needs: the paired bootstrap's false passes and width by test size.

The gate passes when the lower end of the 95% paired-bootstrap interval of the improvement is
above `gate_threshold` (0). With no real effect it should pass 2.5% of the time. The percentile
bootstrap is too narrow on few rows (it cannot see more spread than the rows it has, and it
ignores the t-distribution's heavier tails), so on small tests it passes far more often. This
simulates the gate with the project's own `paired_bootstrap` (`scipy.stats.bootstrap`: the
studentized interval the gate uses beside the percentile and BCa intervals, on the same draws)
on per-row loss differences with NO real effect, drawn from three shapes (normal; heavy-tailed,
Student t with 3 degrees of freedom; skewed, a centred exponential) with token-count weights like
Dolly responses (lognormal, median 60 tokens), and the skewed draws once more with equal weights
(as ROUGE-L weighs rows), and prints, side by side per test size N:

- the false-pass rate of the gate (should be 2.5%) for each shape and interval method,
- the interval's mean width in units of the per-row standard deviation of the difference
  (multiply by your own spread: e.g. 0.5 nats/token gives the width in nats), and
- the milliseconds one interval takes with each method.

    uv run python benchmarks/gate_min_rows.py                 # ~1 minute on 2 cores
    uv run python benchmarks/gate_min_rows.py --trials 300    # quicker, noisier
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from components.common.bootstrap import paired_bootstrap

SIZES = (2, 3, 5, 10, 15, 20, 30, 50, 100)


def draw(shape: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-row differences with mean 0 and standard deviation 1."""
    if shape == "normal":
        return rng.standard_normal(n)
    if shape.startswith("skewed"):
        return rng.exponential(1.0, n) - 1.0  # skewed: mean 0, sd 1
    if shape == "t3":
        return rng.standard_t(3, n) / np.sqrt(3.0)  # variance of t3 is 3
    return rng.exponential(1.0, n) - 1.0  # skewed: mean 0, sd 1


METHODS = ("percentile", "BCa", "studentized")
# "skewed-1": the skewed draws with every weight 1 (ROUGE-L and exact match weigh rows equally)
SHAPES = ("normal", "t3", "skewed", "skewed-1")


def simulate(n: int, shape: str, trials: int, samples: int, seed: int,
             method: str = "BCa") -> tuple[float, float, float]:
    """(false-pass rate, mean interval width in sd units, ms per interval) at `n` rows with no
    real effect."""
    rng = np.random.default_rng(seed)
    passes, widths, seconds = 0, [], 0.0
    for t in range(trials):
        diff = draw(shape, n, rng)
        weights = np.maximum(1.0, rng.lognormal(np.log(60), 0.8, n))
        if shape == "skewed-1":
            weights = np.ones(n)
        base = rng.uniform(2.0, 4.0, n)
        start = time.perf_counter()
        iv = paired_bootstrap(base, base + diff, weights=weights, samples=samples, seed=t,
                              method=method)
        seconds += time.perf_counter() - start
        improvement_low = -iv.high  # loss: improvement = base - tuned
        passes += improvement_low > 0.0
        widths.append(iv.high - iv.low)
    return passes / trials, float(np.mean(widths)), 1000 * seconds / trials


def main(argv: list[str] | None = None) -> dict[int, dict[str, float]]:
    """{N: {"<method> <shape>": false-pass rate, "<method> width", "<method> ms"}}."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args(argv)
    print(f"false passes of the gate with no real effect (nominal 2.5%), {args.trials} trials, "
          f"{args.samples} resamples; width of the 95% interval in per-row sd units; ms per "
          "interval")
    cols = [f"{m} {s}" for m in METHODS for s in SHAPES]
    print(f"{'N':>5} " + " ".join(f"{c:>16}" for c in cols) + " "
          + " ".join(f"{m + ' width':>16} {m + ' ms':>13}" for m in METHODS))
    out: dict[int, dict[str, float]] = {}
    for n in args.sizes:
        row: dict[str, float] = {}
        for m in METHODS:
            ms = []
            for i, shape in enumerate(SHAPES):  # the same draws for both methods
                rate, w, t = simulate(n, shape, args.trials, args.samples, 1000 * n + i, m)
                row[f"{m} {shape}"] = rate
                ms.append(t)
                if shape == "normal":
                    row[f"{m} width"] = w
            row[f"{m} ms"] = float(np.mean(ms))
        out[n] = row
        print(f"{n:>5} " + " ".join(f"{row[c]:>16.1%}" for c in cols) + " " + " ".join(
            f"{row[m + ' width']:>16.2f} {row[m + ' ms']:>13.2f}" for m in METHODS))
    return out


if __name__ == "__main__":
    main()
