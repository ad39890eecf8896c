"""The cost estimate: the default profile's equals hand arithmetic; tokens come from the data."""

from __future__ import annotations

import json

import pytest

from components.common.config import DataConfig, parameter_defaults
from components.common.errors import InputError
from components.prepare_data.prepare import prepare
from planning import cost
from tests.conftest import write_jsonl


def test_default_profile_estimate_equals_hand_arithmetic():
    tokens = cost.Tokens(train_rows=13_500, train_tokens=2_700_000, test_rows=750, measured=True,
                         note="given")
    est = cost.estimate(parameter_defaults(), "default", "g2-standard-8", "NVIDIA_L4", 1,
                        "STANDARD", tokens=tokens)
    # By hand: 2,700,000 tokens / 7,563 tokens/s = 357.0 s of training; evaluate generates
    # 750 x 256 with the base and again with the tuned model, inference 750 x 256 once:
    # 576,000 tokens / 1,200 tokens/s = 480 s; three GPU jobs start for 240 s each = 720 s.
    # (357.0 + 480 + 720) s = 1557.0 s = 0.4325 h x $0.85362/h (0.29358 + 0.56004) = $0.3692.
    assert est.train_tokens == 2_700_000
    assert est.train_seconds == pytest.approx(2_700_000 / 7563)
    assert est.generate_tokens == 576_000
    assert est.generate_seconds == pytest.approx(480.0)
    assert est.startup_seconds == 720
    assert est.gpu_seconds == pytest.approx(2_700_000 / 7563 + 480 + 720)
    assert est.price_per_hour == 0.85362
    assert est.usd == pytest.approx((2_700_000 / 7563 + 480 + 720) / 3600 * 0.85362)
    assert est.usd == pytest.approx(0.3692, abs=5e-5)
    text = "\n".join(est.lines())
    for part in ("g2-standard-8 with 1 x NVIDIA_L4", "on demand", "2,700,000", "$0.37",
                 "estimated (planning/throughput.py)", "7,563 tokens/s"):
        assert part in text


def test_spot_capacity_and_your_own_rate():
    tokens = cost.Tokens(1, 1_000_000, 100, True, "given")
    params = parameter_defaults()
    spot = cost.estimate(params, "default", "g2-standard-8", "NVIDIA_L4", 1, "SPOT",
                         tokens=tokens)
    own = cost.estimate(params, "default", "g2-standard-8", "NVIDIA_L4", 1, "STANDARD",
                        price=1.5, tokens=tokens)
    assert spot.price_per_hour == 0.34057 and own.price_per_hour == 1.5
    assert spot.usd == pytest.approx(spot.gpu_seconds / 3600 * 0.34057)
    assert "your gpu_hourly_usd" in own.price_source


def test_max_steps_bounds_tokens_by_full_packed_steps():
    tokens = cost.Tokens(1, 10**9, 100, True, "given")
    params = {**parameter_defaults(), "max_steps": 20}
    est = cost.estimate(params, "default", "g2-standard-8", "NVIDIA_L4", 1, "STANDARD",
                        tokens=tokens)
    assert est.train_tokens == 20 * 8 * 2 * 1024


def test_tokens_are_measured_when_data_and_tokenizer_are_here(tokenizer, dolly_rows, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", dolly_rows[:120])
    params = {**parameter_defaults(), "dataset": str(data),
              "base_model": "embedded://tiny-gemma3", "max_seq_len": 512}
    t = cost.data_tokens(params)
    splits = prepare(DataConfig(dataset=str(data), base_model="embedded://tiny-gemma3",
                                max_seq_len=512), tokenizer).splits
    assert t.measured and t.train_rows == len(splits["train"])
    assert t.train_tokens == sum(r["num_tokens"] for r in splits["train"])
    assert t.test_rows == len(splits["test"])


def test_tokens_of_remote_dolly_are_an_estimate_from_the_shipped_sample(tokenizer):
    params = parameter_defaults()  # databricks/databricks-dolly-15k, google/gemma-3-1b-it
    t = cost.data_tokens(params)
    sample = prepare(DataConfig(dataset="embedded://dolly-15k-sample.jsonl",
                                base_model="embedded://tiny-gemma3", max_seq_len=1024), tokenizer)
    kept = [r for rows in sample.splits.values() for r in rows]
    per_row = sum(r["num_tokens"] for r in kept) / len(kept)
    train_rows = round(15_011 * len(kept) / sample.source_rows * 0.9)
    assert not t.measured and t.train_rows == train_rows
    assert t.train_tokens == round(train_rows * per_row)
    assert "shipped Dolly sample" in t.note and "15,011" in t.note


def test_max_cost_refuses_in_one_line():
    tokens = cost.Tokens(1, 2_700_000, 750, True, "given")
    est = cost.estimate(parameter_defaults(), "default", "g2-standard-8", "NVIDIA_L4", 1,
                        "STANDARD", tokens=tokens)
    cost.check_max_cost(est, 1.5)
    cost.check_max_cost(est, None)
    with pytest.raises(InputError) as exc:
        cost.check_max_cost(est, 0.01)
    assert "\n" not in str(exc.value) and "above --max-cost $0.01" in str(exc.value)


def test_each_gpu_step_gets_a_deadline_and_max_cost_refuses_on_the_worst_case():
    tokens = cost.Tokens(1, 27_000_000, 750, True, "given")
    est = cost.estimate(parameter_defaults(), "default", "g2-standard-8", "NVIDIA_L4", 1,
                        "STANDARD", tokens=tokens)
    # By hand: fine-tune 27,000,000 / 7,563 = 3,570.0 s; 3 x that + 240 s start-up = 10,950 s,
    # whole minutes: 10,980 s. evaluate 750 x 2 x 256 / 1,200 = 320 s: 3 x 320 + 240 = 1,200 s,
    # under the 30 min floor. inference 160 s: the floor.
    timeouts = {k: v["timeout_seconds"] for k, v in est.steps.items()}
    assert timeouts == {"fine-tune": 10_980, "evaluate": 1800, "inference": 1800}
    assert cost.deadlines(est) == {"evaluate": "1800s", "fine-tune": "10980s",
                                   "inference": "1800s"}
    assert est.worst_usd == pytest.approx((10_980 + 1800 + 1800) / 3600 * 0.85362)
    assert est.usd < est.worst_usd
    text = "\n".join(est.lines())
    assert "fine-tune: g2-standard-8 (1 x NVIDIA_L4) at $0.8536/h" in text
    assert "timeout 3.05 h" in text and f"worst case (every GPU step to its timeout): " \
        f"${est.worst_usd:.2f}" in text
    cap = (est.usd + est.worst_usd) / 2  # above the expected cost, below the worst case
    with pytest.raises(InputError) as exc:
        cost.check_max_cost(est, cap)
    assert str(exc.value).startswith(f"worst case ${est.worst_usd:.2f} (every GPU step running")
    # a template's own (shorter) deadlines are what bounds the bill
    short = est.with_timeouts({"fine-tune": 7200.0})
    assert short.worst_usd == pytest.approx((7200 + 1800 + 1800) / 3600 * 0.85362)


def test_deploy_adds_serving_hours_until_the_ttl_on_the_serving_machine():
    from planning.machines import G2_MACHINES

    tokens = cost.Tokens(1, 1_000_000, 100, True, "given")
    params = {**parameter_defaults(), "deploy": True, "deploy_ttl_hours": 8}
    two = G2_MACHINES["g2-standard-24"]
    est = cost.estimate(params, "default", "g2-standard-8", "NVIDIA_L4", 1, "STANDARD",
                        tokens=tokens, serving=two)
    off = cost.estimate({**params, "deploy": False}, "default", "g2-standard-8", "NVIDIA_L4",
                        1, "STANDARD", tokens=tokens, serving=two)
    # g2-standard-24: 24 vCPU x 0.29358 / 8 + 2 L4 x 0.56004 = 2.00082 $/h, for 8 h
    assert est.serving["usd_per_hour"] == 2.00082 and est.serving["hours"] == 8
    assert est.usd == pytest.approx(off.usd + 8 * 2.00082)
    assert est.worst_usd == pytest.approx(off.worst_usd + 8 * 2.00082)
    assert "serving (deploy=true): g2-standard-24 (2 x NVIDIA_L4) for 8 h" in "\n".join(est.lines())


def test_every_price_names_its_source_and_date():
    from planning.machines import G2_MACHINES
    from planning.prices import price

    for machine in G2_MACHINES:
        for capacity in ("STANDARD", "SPOT", "FLEX_START"):
            p = price(machine, capacity)
            assert p is not None and p.usd_per_hour > 0
            assert "read 2026-11-28" in p.source and "searched 2026-12-07" in p.source
    assert price("a2-highgpu-1g", "STANDARD") is None  # not in the table: refused, not guessed


def test_a_changed_profile_is_estimated_by_the_same_arithmetic_or_refused():
    tokens = cost.Tokens(1, 1_000_000, 100, True, "given")
    params = {**parameter_defaults(), "base_model": "google/gemma-3-4b-it"}
    est = cost.estimate(params, "default", "g2-standard-8", "NVIDIA_L4", 1, "STANDARD",
                        tokens=tokens)
    assert est.train_tokens_per_s == pytest.approx(0.25 * 121e12 / (4 * 3_880_263_168))
    with pytest.raises(InputError, match="no throughput figure"):
        cost.estimate({**params, "base_model": "gs://b/m"}, "default", "g2-standard-8",
                      "NVIDIA_L4", 1, "STANDARD", tokens=tokens)


def test_the_estimate_travels_as_json():
    tokens = cost.Tokens(1, 1_000_000, 100, False, "sample")
    est = cost.estimate(parameter_defaults(), "default", "g2-standard-8", "NVIDIA_L4", 1,
                        "STANDARD", tokens=tokens)
    data = json.loads(est.as_json())
    assert data["profile"] == "default" and data["usd"] == round(est.usd, 4)
    assert data["tokens_measured"] is False
