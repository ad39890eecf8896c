"""Data-parallel training on CPU: two gloo processes train what one process trains.

Two processes with per-device batch 2 against one process with batch 4: the same global batch
(2 x 1 x 2 = 4 x 1 x 1), the same rows in each global batch (the length-bucketed sampler buckets
by the global micro-batch, sampling.py), the same token-averaged loss (transformers averages the
token count across ranks), the same learning rate. What differs is floating-point summation order
(each rank sums its own half, then gloo adds the two halves; thread counts and the CPU's vector
path change it too), and fp32 rounding differences of ~1e-7 relative grow through Adam, whose
update divides by sqrt(v). So the bounds are relative (tests/adapter_compare.py): the adapters
must agree to ADAPTER_REL (2%) of how far training moved them (measured: 0.008% on one 2-core
machine, 0.22% on an AVX-512 BF16 one), and the logged loss and gradient norm of every step to
LOG_REL (measured: ~4e-7). The same test runs the errors those bounds exist to catch and shows
each one beyond them: a gradient average off by the world size's factor (halved), and one
rank's rows dropped (each step's gradient from 2 of its 4 rows). Dropout is off: its masks come
from each rank's own RNG stream and cannot match.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from components.common.config import DataConfig
from components.common.results import AdapterModel
from components.fine_tune.train import run_fine_tune
from components.prepare_data.prepare import prepare
from tests.adapter_compare import ADAPTER_REL, movement, relative_gap, weights
from tests.conftest import write_jsonl

STEPS = 5
BASE = dict(
    base_model="embedded://tiny-gemma3", max_seq_len=128, max_steps=STEPS, learning_rate=3e-3,
    gradient_accumulation_steps=1, logging_steps=1, warmup_ratio=0.0, lora_r=4, lora_alpha=8,
    lora_dropout=0.0, eval_steps=100, save_minutes=0,
)
# Per-step logged loss and grad_norm, relative: ~250x the measured gap; a halved gradient average
# is 0.5 off, a dropped rank's rows ~3e-3 off in the first loss already.
LOG_REL = 1e-4


@pytest.fixture(scope="module")
def data(tokenizer, tmp_path_factory) -> dict[str, str]:
    cfg = DataConfig(dataset="embedded://dolly-15k-sample.jsonl",
                     base_model="embedded://tiny-gemma3", max_seq_len=128)
    rows = prepare(cfg, tokenizer).splits["train"][:20]  # 5 global batches of 4
    d = tmp_path_factory.mktemp("ddp-rows")
    return {"train": str(write_jsonl(d / "train.jsonl", rows)),
            "validation": str(write_jsonl(d / "validation.jsonl", []))}


def run(data: dict[str, str], out: Path, **params) -> tuple[AdapterModel, float]:
    t0 = time.perf_counter()
    from components.common.config import TrainConfig, build

    meta = run_fine_tune(build(TrainConfig, {**BASE, **params}), train=data["train"],
                         validation=data["validation"], model=str(out))["model"]
    return meta, time.perf_counter() - t0


def logged(out: Path, key: str) -> list[float]:
    """`key` (loss, grad_norm) of every training step, from the run's log_history.json."""
    history = json.loads((out / "log_history.json").read_text())
    return [h[key] for h in history if "loss" in h]


def log_gap(a: list[float], ref: list[float]) -> float:
    """Largest per-step difference, relative to the reference run's value."""
    assert len(a) == len(ref) == STEPS
    return max(abs(x - y) / abs(y) for x, y in zip(a, ref, strict=True))


def halve_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    """One process whose gradients reach clipping and the optimizer halved: what a data-parallel
    average divided by the world size once too often does (summing instead of averaging is the
    same error, doubled)."""
    import accelerate

    clip = accelerate.Accelerator.clip_grad_norm_

    def halving(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        for p in parameters:
            if p.grad is not None:
                p.grad.mul_(0.5)
        return clip(self, parameters, max_norm, norm_type)

    monkeypatch.setattr(accelerate.Accelerator, "clip_grad_norm_", halving)


def test_two_gloo_processes_train_the_adapter_one_process_trains(data, tmp_path, monkeypatch):
    two, t2 = run(data, tmp_path / "two", num_processes=2, per_device_train_batch_size=2)
    one, t1 = run(data, tmp_path / "one", num_processes=1, per_device_train_batch_size=4)
    assert two.world_size == 2 and one.world_size == 1
    assert two.global_batch_size == one.global_batch_size == 4
    assert two.global_step == one.global_step == STEPS
    assert two.train_tokens == one.train_tokens, "the same rows, all of them, once"

    a1 = weights(tmp_path / "one")
    gap = relative_gap(weights(tmp_path / "two"), a1)
    losses = log_gap(logged(tmp_path / "two", "loss"), logged(tmp_path / "one", "loss"))
    norms = log_gap(logged(tmp_path / "two", "grad_norm"), logged(tmp_path / "one", "grad_norm"))
    print(json.dumps({"adapter_gap_of_movement": gap, "lora_b_max_abs": movement(a1),
                      "loss_gap": losses, "grad_norm_gap": norms,
                      "seconds_two": round(t2, 1), "seconds_one": round(t1, 1)}))
    assert movement(a1) > 1e-3, "training moved the adapter"
    assert gap < ADAPTER_REL, f"2-process adapter differs by {gap:.2%} of its movement"
    assert losses < LOG_REL and norms < LOG_REL, (losses, norms)

    # The errors the bounds are for, each beyond them. One rank's rows dropped: each step's
    # gradient from 2 of its 4 rows (one process with half the batch).
    run(data, tmp_path / "dropped", num_processes=1, per_device_train_batch_size=2)
    assert relative_gap(weights(tmp_path / "dropped"), a1) > 10 * ADAPTER_REL
    assert log_gap(logged(tmp_path / "dropped", "loss"), logged(tmp_path / "one", "loss")) \
        > 10 * LOG_REL
    # A gradient average off by a factor 2: Adam divides most of the scale out of its update,
    # so the adapter shows only what gradient clipping makes of it (~7% measured); every logged
    # gradient norm shows the factor itself.
    halve_gradients(monkeypatch)
    run(data, tmp_path / "halved", num_processes=1, per_device_train_batch_size=4)
    assert relative_gap(weights(tmp_path / "halved"), a1) > ADAPTER_REL
    assert log_gap(logged(tmp_path / "halved", "grad_norm"),
                   logged(tmp_path / "one", "grad_norm")) > 1000 * LOG_REL

    # Rank 0 alone published: the model folder holds what one process writes, and its
    # metrics are rank 0's (global token count, world size 2), written once.
    names = {p.name for p in (tmp_path / "two").iterdir()}
    assert names == {p.name for p in (tmp_path / "one").iterdir()}
    written = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert written["world_size"] == 2 and written["train_tokens"] == two.train_tokens


@pytest.mark.slow  # two more trainings, one of them two processes
def test_fsdp_over_two_processes_trains_the_same_adapter(data, tmp_path):
    """FSDP (the base sharded across the ranks, as for a model bigger than one GPU) on gloo:
    the same adapter as one process, within the same relative bound."""
    sharded, _ = run(data, tmp_path / "fsdp", num_processes=2, per_device_train_batch_size=2,
                     distributed="fsdp")
    run(data, tmp_path / "one", num_processes=1, per_device_train_batch_size=4)
    assert sharded.distributed == "fsdp" and sharded.world_size == 2
    gap = relative_gap(weights(tmp_path / "fsdp"), weights(tmp_path / "one"))
    print(json.dumps({"fsdp_adapter_gap_of_movement": gap}))
    assert gap < ADAPTER_REL


@pytest.mark.parametrize(("nprocs", "shm", "env", "expected"), [
    (4, 64 * 2**20, {}, {"NCCL_SHM_DISABLE": "1"}),  # a container's default 64 MB
    (4, 0, {}, {"NCCL_SHM_DISABLE": "1"}),  # no /dev/shm at all
    (4, 16 * 2**30, {}, {}),  # Model Garden's 16 GB: NCCL keeps its transport
    (1, 64 * 2**20, {}, {}),  # one process: no NCCL
    (4, 64 * 2**20, {"NCCL_SHM_DISABLE": "0"}, {}),  # the user's own setting wins
])
def test_a_small_dev_shm_turns_nccl_shared_memory_off(nprocs, shm, env, expected):
    from components.fine_tune.distributed import nccl_env

    assert nccl_env(nprocs, shm, env) == expected


def test_dev_shm_is_measured_here():
    from components.fine_tune.distributed import shm_bytes

    assert shm_bytes() > 0 and shm_bytes("/no/such/dir") == 0
