"""Data-parallel training on CPU: two gloo processes train what one process trains.

Two processes with per-device batch 2 against one process with batch 4: the same global batch
(2 x 1 x 2 = 4 x 1 x 1), the same rows in each global batch (the length-bucketed sampler buckets
by the global micro-batch, sampling.py), the same token-averaged loss (transformers averages the
token count across ranks), the same learning rate. What differs is floating-point summation order
(each rank sums its own half, then gloo adds the two halves), and fp32 rounding differences of
~1e-7 relative per step grow a little through Adam, whose update divides by sqrt(v). The tolerance
is set against the size of the update itself: after 5 steps at lr 3e-3 the LoRA B weights (which
start at 0) have moved by ~9e-3; the two runs must agree to 1e-5, about 0.1% of that (measured
on 2026-11-28: 6.9e-7, and identical logged losses and token counts at every step), while the
same single process on another data order (seed 7) lands ~1e-2 away. So the test tells "the same
training" from "a different training" by three orders of magnitude. Dropout is off: its masks
come from each rank's own RNG stream and cannot match.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from components.common.config import DataConfig
from components.fine_tune.train import run_fine_tune
from components.prepare_data.prepare import prepare
from tests.conftest import write_jsonl

STEPS = 5
BASE = dict(
    base_model="embedded://tiny-gemma3", max_seq_len=128, max_steps=STEPS, learning_rate=3e-3,
    gradient_accumulation_steps=1, logging_steps=1, warmup_ratio=0.0, lora_r=4, lora_alpha=8,
    lora_dropout=0.0, eval_steps=100, save_minutes=0,
)
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def data(tokenizer, tmp_path_factory) -> dict[str, str]:
    cfg = DataConfig(dataset="embedded://dolly-15k-sample.jsonl",
                     base_model="embedded://tiny-gemma3", max_seq_len=128)
    rows = prepare(cfg, tokenizer).splits["train"][:20]  # 5 global batches of 4
    d = tmp_path_factory.mktemp("ddp-rows")
    return {"train": str(write_jsonl(d / "train.jsonl", rows)),
            "validation": str(write_jsonl(d / "validation.jsonl", []))}


def adapter(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "adapter_model.safetensors")


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def run(data: dict[str, str], out: Path, **params) -> tuple[dict, float]:
    t0 = time.perf_counter()
    from components.common.config import TrainConfig, build

    meta = run_fine_tune(build(TrainConfig, {**BASE, **params}), train=data["train"],
                         validation=data["validation"], model=str(out))["model"]
    return meta, time.perf_counter() - t0


def test_two_gloo_processes_train_the_adapter_one_process_trains(data, tmp_path):
    two, t2 = run(data, tmp_path / "two", num_processes=2, per_device_train_batch_size=2)
    one, t1 = run(data, tmp_path / "one", num_processes=1, per_device_train_batch_size=4)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["global_batch_size"] == one["global_batch_size"] == 4
    assert two["global_step"] == one["global_step"] == STEPS
    assert two["train_tokens"] == one["train_tokens"], "the same rows, all of them, once"

    a2, a1 = adapter(tmp_path / "two"), adapter(tmp_path / "one")
    moved = max(w.abs().max().item() for k, w in a1.items() if "lora_B" in k)  # B starts at 0
    diff = max_diff(a2, a1)
    print(json.dumps({"max_abs_diff": diff, "lora_b_max_abs": moved, "seconds_two": round(t2, 1),
                      "seconds_one": round(t1, 1)}))
    assert moved > 100 * TOLERANCE, "training moved the adapter far beyond the tolerance"
    assert diff < TOLERANCE, f"2-process adapter differs by {diff:.2e} (moved {moved:.2e})"
    assert abs(two["train_loss"] - one["train_loss"]) < 1e-4

    # The control that gives the tolerance its meaning: one process, another data order.
    run(data, tmp_path / "other", num_processes=1, per_device_train_batch_size=4, seed=7)
    assert max_diff(adapter(tmp_path / "other"), a1) > 100 * TOLERANCE

    # Rank 0 alone published: the model folder holds what one process writes, and its
    # metrics are rank 0's (global token count, world size 2), written once.
    names = {p.name for p in (tmp_path / "two").iterdir()}
    assert names == {p.name for p in (tmp_path / "one").iterdir()}
    written = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert written["world_size"] == 2 and written["train_tokens"] == two["train_tokens"]



@pytest.mark.slow  # two more trainings, one of them two processes
def test_fsdp_over_two_processes_trains_the_same_adapter(data, tmp_path):
    """FSDP (the base sharded across the ranks, as for a model bigger than one GPU) on gloo:
    the same adapter as one process, within the same tolerance."""
    sharded, _ = run(data, tmp_path / "fsdp", num_processes=2, per_device_train_batch_size=2,
                     distributed="fsdp")
    run(data, tmp_path / "one", num_processes=1, per_device_train_batch_size=4)
    assert sharded["distributed"] == "fsdp" and sharded["world_size"] == 2
    diff = max_diff(adapter(tmp_path / "fsdp"), adapter(tmp_path / "one"))
    print(json.dumps({"fsdp_max_abs_diff": diff}))
    assert diff < TOLERANCE
