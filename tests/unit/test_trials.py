"""Choosing a sweep's winner: clear winner, overlap goes to the cheaper trial, bad rows refused."""

import numpy as np
import pytest

from components.common.trials import (
    Choice,
    TrialScores,
    cheapness,
    choose,
    from_json,
    settings_label,
    to_json,
)

ROWS = 120


def trial(name: str, shift: float, noise: float, settings: dict, seed: int, **kw) -> TrialScores:
    """Rows of varying difficulty (shared across trials: the same base seed) plus a per-trial shift
    and a per-trial noise."""
    rng = np.random.default_rng(100)
    tokens = rng.integers(5, 60, ROWS)
    difficulty = rng.normal(2.3, 0.6, ROWS)
    own = np.random.default_rng(seed).normal(0.0, noise, ROWS)
    per_token = difficulty + shift + own
    return TrialScores(name=name, settings=settings, row_loss=list(per_token * tokens),
                       row_tokens=[int(t) for t in tokens], **kw)


def test_clear_winner_is_the_best_even_if_dearer():
    trials = [trial("t0", 0.30, 0.05, {"lora_r": 8}, 1),
              trial("t1", 0.00, 0.05, {"lora_r": 32}, 2)]
    c = choose(trials)
    assert c.winner == "t1" and c.metric == "validation_loss" and c.test_split_used is False
    t0 = c.trial("t0")
    assert t0["diff_vs_best"]["low"] > 0 and not t0["overlaps_best"]
    assert t0["diff_vs_best"]["estimate"] == pytest.approx(
        t0["validation_loss"] - c.trial("t1")["validation_loss"])
    assert c.trial("t1")["best"] and c.trial("t1")["overlaps_best"]
    assert c.why.startswith("lora_r=32 chosen: the lowest validation loss")
    assert "better beyond noise" in c.why and "lora_r=8" in c.why
    assert c.rows == ROWS


def test_overlap_goes_to_the_cheaper_trial_and_says_so():
    trials = [trial("t0", 0.01, 0.4, {"lora_r": 8, "learning_rate": 1e-4}, 3),
              trial("t1", 0.00, 0.4, {"lora_r": 32, "learning_rate": 1e-4}, 4)]
    c = choose(trials)
    losses = {t["name"]: t["validation_loss"] for t in c.trials}
    assert min(losses, key=losses.get) == "t1"  # the dearer trial is the best on these rows
    assert c.trial("t0")["overlaps_best"] and c.trial("t1")["overlaps_best"]
    assert c.winner == "t0"
    d = c.trial("t0")["diff_vs_best"]
    assert d["low"] <= 0 <= d["high"]
    assert c.why.startswith("lora_r=8, learning_rate=0.0001 chosen: indistinguishable from "
                            "the best (lora_r=32, learning_rate=0.0001, validation loss ")
    assert f"{losses['t0']:.2f} vs {losses['t1']:.2f}" in c.why
    assert c.why.endswith(") and cheaper.")


def test_best_that_is_also_cheapest_says_so():
    trials = [trial("t0", 0.00, 0.4, {"lora_r": 8}, 4), trial("t1", 0.01, 0.4, {"lora_r": 32}, 3)]
    c = choose(trials)
    assert c.winner == "t0" and c.trial("t0")["best"] and c.trial("t1")["overlaps_best"]
    assert "the cheapest of the trials indistinguishable from it (lora_r=32: " in c.why


def test_overlap_with_the_dearer_best_prefers_fewer_steps():
    trials = [trial("t0", 0.00, 0.4, {"max_steps": 400}, 5),
              trial("t1", 0.02, 0.4, {"max_steps": 100}, 6)]
    c = choose(trials)
    assert c.trial("t1")["overlaps_best"]
    assert c.winner == "t1" and c.trial("t1")["cost_rank"] == 0


def test_mismatched_rows_are_refused():
    a = trial("t0", 0.0, 0.1, {"lora_r": 8}, 1)
    short = TrialScores("t1", {"lora_r": 16}, a.row_loss[:-1], a.row_tokens[:-1])
    with pytest.raises(ValueError, match="the same rows"):
        choose([a, short])
    other_tokens = TrialScores("t1", {"lora_r": 16}, a.row_loss, [t + 1 for t in a.row_tokens])
    with pytest.raises(ValueError, match="response tokens on validation row 0"):
        choose([a, other_tokens])
    with pytest.raises(ValueError, match="row losses but"):
        choose([TrialScores("t0", {}, [1.0, 2.0], [3])])
    with pytest.raises(ValueError, match="no trials"):
        choose([])
    with pytest.raises(ValueError, match="names repeat"):
        choose([a, a])


def test_single_trial_wins_alone():
    c = choose([trial("t0", 0.0, 0.1, {"lora_r": 16}, 1)])
    assert c.winner == "t0" and c.trial("t0")["diff_vs_best"] == {
        "estimate": 0.0, "low": 0.0, "high": 0.0}
    assert c.why.startswith("lora_r=16 chosen: the only trial")


def test_identical_scores_tie_and_the_cheaper_wins():
    a = trial("t0", 0.0, 0.1, {"lora_r": 32}, 1)
    b = TrialScores("t1", {"lora_r": 16}, a.row_loss, a.row_tokens)
    c = choose([a, b])
    assert c.trial("t0")["best"]  # a tie is broken by grid order
    assert c.trial("t1")["diff_vs_best"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    assert c.winner == "t1" and "indistinguishable" in c.why
    # same cost, same scores: grid order decides
    same = choose([a, TrialScores("t1", {"lora_r": 32}, a.row_loss, a.row_tokens)])
    assert same.winner == "t0"


def test_a_diverged_trial_is_never_chosen():
    a = trial("t0", 0.0, 0.1, {"lora_r": 32}, 1)
    nan = TrialScores("t1", {"lora_r": 8}, [float("nan")] * ROWS, a.row_tokens)
    c = choose([a, nan])
    assert c.winner == "t0" and c.trial("t1")["validation_loss"] is None
    assert c.trial("t1")["diff_vs_best"] is None and not c.trial("t1")["overlaps_best"]
    from_json(to_json(c))  # strict JSON: no NaN written


def test_json_round_trip_keeps_everything():
    trials = [trial("t0", 0.1, 0.2, {"lora_r": 8}, 1, train_seconds=12.5, tokens_per_second=900.0,
                    cost_usd=0.02, curve=[(10, 3.1), (20, 2.7)]),
              trial("t1", 0.0, 0.2, {"lora_r": 16}, 2, curve=((10, 3.0), (20, 2.5)))]
    c = choose(trials, samples=500)
    text = to_json(c)
    back = from_json(text)
    assert isinstance(back, Choice) and back == c and to_json(back) == text
    assert back.trial("t0")["curve"] == [[10, 3.1], [20, 2.7]]
    assert back.trial("t0")["cost_usd"] == 0.02 and back.trial("t1")["cost_usd"] is None
    assert '"test_split_used": false' in text


def test_deterministic_with_seed():
    trials = [trial("t0", 0.02, 0.4, {"lora_r": 8}, 3), trial("t1", 0.0, 0.4, {"lora_r": 16}, 4)]
    assert to_json(choose(trials, seed=7)) == to_json(choose(trials, seed=7))
    a = choose(trials, seed=1).trial("t0")["diff_vs_best"]
    b = choose(trials, seed=2).trial("t0")["diff_vs_best"]
    assert a["estimate"] == b["estimate"] and (a["low"], a["high"]) != (b["low"], b["high"])


def test_cheapness_orders_rank_then_steps_then_length():
    assert cheapness({"lora_r": 8, "max_steps": 500}) < cheapness({"lora_r": 16, "max_steps": 50})
    assert cheapness({"max_steps": 50}) < cheapness({"max_steps": 100}) < cheapness({"max_steps": 0})
    assert cheapness({"num_train_epochs": 1.0}) < cheapness({"num_train_epochs": 2.0})
    assert cheapness({"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}) < \
        cheapness({"per_device_train_batch_size": 2, "gradient_accumulation_steps": 8})
    assert cheapness({"max_seq_len": 512}) < cheapness({"max_seq_len": 1024})
    assert cheapness({"target_modules": "q_proj,v_proj"}) < cheapness(
        {"target_modules": "q_proj,k_proj,v_proj,o_proj"})
    assert cheapness({"learning_rate": 1e-4}) == cheapness({"learning_rate": 2e-4})


def test_settings_label():
    assert settings_label({"lora_r": 8, "learning_rate": 2e-4}) == "lora_r=8, learning_rate=0.0002"
    assert settings_label({}, "t3") == "t3"
