"""Choosing a sweep's winner on the validation rows, never the test split.

Why paired: every trial scores the same validation rows, so the difference of two trials is
resampled row by row (the project's studentized bootstrap), which cancels row difficulty.
Why prefer the cheaper trial: among trials that the validation rows cannot tell apart from the
best, the cheaper one (`cheapness`) costs less to train and serve for the same evidence.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from components.common.bootstrap import paired_bootstrap

__all__ = ["METRIC", "SWEEP_FILE", "Choice", "TrialScores", "cheapness", "choose", "from_json",
           "settings_label", "to_json"]

METRIC = "validation_loss"
SWEEP_FILE = "sweep.json"  # the sweep artifact's file: to_json(Choice)

# The settings that make a trial cheaper, most important first: a smaller adapter (rank), fewer
# optimizer steps or epochs, fewer sequences per step, shorter sequences, fewer adapted modules.
_COST_ORDER = ("lora_r", "max_steps", "num_train_epochs", "sequences_per_step", "max_seq_len",
               "target_modules")


@dataclass(frozen=True)
class TrialScores:
    """One trial's validation rows as scored with its kept adapter, plus what it cost."""

    name: str
    settings: dict[str, Any]
    row_loss: list[float]  # per validation row: summed response-token NLL
    row_tokens: list[int]  # per validation row: response tokens counted
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0
    cost_usd: float | None = None
    curve: Sequence[tuple[int, float]] = ()  # (global step, validation loss) during training


@dataclass(frozen=True)
class Choice:
    """The winner, every trial's numbers (plain dicts, as in `sweep.json`) and why in words."""

    winner: str
    metric: str
    trials: list[dict[str, Any]]
    why: str
    test_split_used: bool = False  # the choice reads validation rows only
    confidence: float = 0.95
    rows: int = 0

    def trial(self, name: str) -> dict[str, Any]:
        return next(t for t in self.trials if t["name"] == name)


def cheapness(settings: Mapping[str, Any]) -> tuple[float, ...]:
    """A sort key: smaller is cheaper. Compared in `_COST_ORDER` (lora_r, then max_steps, then
    num_train_epochs, per_device_train_batch_size x gradient_accumulation_steps, max_seq_len,
    the number of target modules); a setting the trial does not name counts as equal. max_steps
    <= 0 means "run by epochs", so it sorts after any positive step count. Other settings
    (learning rate, dropout, ...) cost the same and do not count."""
    values = dict(settings)
    if "per_device_train_batch_size" in values or "gradient_accumulation_steps" in values:
        values["sequences_per_step"] = (float(values.get("per_device_train_batch_size", 1))
                                        * float(values.get("gradient_accumulation_steps", 1)))
    key: list[float] = []
    for name in _COST_ORDER:
        v = values.get(name)
        if v is None:
            key.append(0.0)
        elif name == "target_modules":
            key.append(float(len(v) if isinstance(v, list | tuple)
                             else len([m for m in str(v).split(",") if m.strip()])))
        elif name == "max_steps" and float(v) <= 0:
            key.append(math.inf)
        else:
            key.append(float(v))
    return tuple(key)


def settings_label(settings: Mapping[str, Any], name: str = "") -> str:
    """`lora_r=8, learning_rate=0.0001`: how a trial is named in words (its name if no setting)."""
    if not settings:
        return name
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in settings.items())


def _rows(trials: Sequence[TrialScores]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Tokens per row (shared) and each trial's mean loss per row; ValueError unless every trial
    scored the same rows."""
    if not trials:
        raise ValueError("no trials to choose from")
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        raise ValueError(f"trial names repeat: {names}")
    first = trials[0]
    tokens = np.asarray(first.row_tokens, dtype=float)
    per_row: list[np.ndarray] = []
    for t in trials:
        loss, tok = np.asarray(t.row_loss, dtype=float), np.asarray(t.row_tokens, dtype=float)
        if loss.ndim != 1 or loss.shape != tok.shape:
            raise ValueError(f"trial {t.name}: {loss.size} row losses but {tok.size} token counts")
        if loss.size != tokens.size:
            raise ValueError(f"trial {t.name} scored {loss.size} validation rows, trial "
                             f"{first.name} {tokens.size}: the trials must score the same rows")
        if (tok < 0).any() or tok.sum() <= 0:
            raise ValueError(f"trial {t.name}: token counts must be >= 0 and not all zero")
        if not np.array_equal(tok, tokens):
            row = int(np.flatnonzero(tok != tokens)[0])
            raise ValueError(f"trial {t.name} counts {int(tok[row])} response tokens on validation "
                             f"row {row}, trial {first.name} {int(tokens[row])}: the trials must "
                             "score the same rows")
        per_row.append(np.divide(loss, tok, out=np.zeros_like(loss), where=tok > 0))
    return tokens, per_row


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def choose(trials: list[TrialScores], confidence: float = 0.95, seed: int = 0,
           samples: int = 2000) -> Choice:
    """Best = lowest token-weighted validation loss; each other trial gets a paired bootstrap
    interval of (its loss - the best's). Among the best and the trials whose interval includes
    0, the cheapest by `cheapness` wins (grid order breaks a tie). A trial whose loss is not
    finite (diverged) is never best nor chosen."""
    tokens, per_row = _rows(trials)
    losses = [float((p * tokens).sum() / tokens.sum()) for p in per_row]
    finite = [i for i, v in enumerate(losses) if math.isfinite(v)]
    if not finite:
        raise ValueError("no trial has a finite validation loss")
    best = min(finite, key=lambda i: (losses[i], i))
    diffs: dict[int, tuple[float, float, float]] = {best: (0.0, 0.0, 0.0)}
    for i in finite:
        if i != best:
            d = paired_bootstrap(per_row[best], per_row[i], weights=tokens, samples=samples,
                                 confidence=confidence, seed=seed)
            diffs[i] = (d.estimate, d.low, d.high)
    tied = [i for i in finite if diffs[i][1] <= 0.0 <= diffs[i][2]]
    order = sorted(range(len(trials)), key=lambda i: (cheapness(trials[i].settings), i))
    rank = {i: r for r, i in enumerate(order)}
    winner = min(tied, key=lambda i: rank[i])

    rows: list[dict[str, Any]] = []
    for i, t in enumerate(trials):
        d = diffs.get(i)
        rows.append({
            "name": t.name, "settings": dict(t.settings),
            "validation_loss": losses[i] if i in diffs else None,
            "diff_vs_best": (None if d is None
                             else {"estimate": d[0], "low": d[1], "high": d[2]}),
            "overlaps_best": i in tied, "best": i == best, "cost_rank": rank[i],
            "train_seconds": float(t.train_seconds),
            "tokens_per_second": float(t.tokens_per_second),
            "cost_usd": None if t.cost_usd is None else float(t.cost_usd),
            "curve": [[int(s), float(v)] for s, v in t.curve],
        })
    return Choice(winner=trials[winner].name, metric=METRIC, trials=rows,
                  why=_why(trials, losses, diffs, tied, best, winner), confidence=confidence,
                  rows=int(tokens.size))


def _why(trials: Sequence[TrialScores], losses: list[float],
         diffs: dict[int, tuple[float, float, float]], tied: list[int], best: int,
         winner: int) -> str:
    def label(i: int) -> str:
        return settings_label(trials[i].settings, trials[i].name)

    def versus(i: int) -> str:
        est, low, high = diffs[i]
        return (f"{label(i)}: {losses[i]:.2f}, difference {_signed(est)} "
                f"[{_signed(low)}, {_signed(high)}]")

    others = sorted((i for i in diffs if i != best), key=lambda i: diffs[i][0])
    if len(trials) == 1:
        return f"{label(winner)} chosen: the only trial (validation loss {losses[winner]:.2f})."
    if winner != best:
        est, low, high = diffs[winner]
        return (f"{label(winner)} chosen: indistinguishable from the best ({label(best)}, "
                f"validation loss {losses[winner]:.2f} vs {losses[best]:.2f}, difference "
                f"{_signed(est)} [{_signed(low)}, {_signed(high)}]) and cheaper.")
    close = [i for i in tied if i != best]
    if close:
        return (f"{label(best)} chosen: the lowest validation loss ({losses[best]:.2f}) and the "
                "cheapest of the trials indistinguishable from it ("
                + "; ".join(versus(i) for i in close) + ").")
    if not others:
        return (f"{label(best)} chosen: the only trial with a finite validation loss "
                f"({losses[best]:.2f}).")
    return (f"{label(best)} chosen: the lowest validation loss ({losses[best]:.2f}), better "
            f"beyond noise than every other trial (the closest, {versus(others[0])}).")


def to_json(choice: Choice) -> str:
    """`sweep.json`: strict JSON (a non-finite number is refused, not written as NaN)."""
    return json.dumps(dataclasses.asdict(choice), indent=2, allow_nan=False)


def from_json(text: str) -> Choice:
    """A Choice from `sweep.json`; unknown keys ignored (a newer writer), missing ones defaulted."""
    data = json.loads(text)
    names = {f.name for f in dataclasses.fields(Choice)}
    return Choice(**{k: v for k, v in data.items() if k in names})

