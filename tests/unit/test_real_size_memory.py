"""Real size: every phase that runs the model, on a Gemma 3 with the 1B's 262,144-token vocabulary
and hidden size (two layers, random weights, built here), against the memory arithmetic.

Each phase runs in a process of its own (`tests/real_size_probe.py`), which measures its peak
resident memory above what it held when the phase began. The arithmetic
(`components.common.memory`) must cover it, within the 10% that planning/memory.py allows the
estimate as its own margin of error, and must not be vacuous: the phase uses at least half of it.
The full-logits path these phases replaced would need 48 GiB for the scoring batch below, on a
24 GiB machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.common.config import EvalConfig, TrainConfig
from components.common.memory import (
    GIB,
    ModelShape,
    full_logits_bytes,
    generation_bytes,
    loading_bytes,
    lora_params,
    scoring_bytes,
    training_bytes,
    training_plan,
    use_fused_head,
)

MARGIN = 0.9
FP32 = 4


@pytest.fixture(scope="module")
def real_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scripts.make_real_size_model import build

    return build(tmp_path_factory.mktemp("gemma3-1b-2-layers"), "google/gemma-3-1b-it", layers=2)


@pytest.fixture(scope="module")
def shape(real_model: Path) -> ModelShape:
    from transformers import AutoConfig

    m = ModelShape.of(AutoConfig.from_pretrained(real_model))
    assert (m.vocab, m.hidden, m.layers) == (262_144, 1152, 2)
    return m


def probe(phase: str, model: Path, **options: int) -> dict:
    args = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    done = subprocess.run([sys.executable, "-m", "tests.real_size_probe", phase, str(model), *args],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["used"] = (result["peak_kib"] - result["start_kib"]) * 1024
    return result


def within(used: int, expected: int) -> None:
    assert used <= expected / MARGIN, f"measured {used / GIB:.2f} GiB, arithmetic {expected / GIB:.2f}"
    assert used >= expected / 2, f"measured {used / GIB:.2f} GiB, arithmetic {expected / GIB:.2f}"


def test_scoring_16_rows_of_1024_tokens(real_model: Path, shape: ModelShape) -> None:
    batch = EvalConfig().generation_batch_size
    r = probe("score", real_model, batch=batch, width=1024, response=64)
    assert 1000 <= r["width"] <= 1024 and r["response_tokens"] >= batch * 32
    within(r["used"], scoring_bytes(shape, batch, r["width"], r["response_tokens"], FP32,
                                    on_cpu=True))
    assert full_logits_bytes(batch * r["width"], shape.vocab) / GIB > 40
    assert r["used"] < 3 * GIB


def test_generation_16_prompts_of_1024_tokens(real_model: Path, shape: ModelShape) -> None:
    batch = EvalConfig().generation_batch_size
    r = probe("generate", real_model, batch=batch, width=1024, response=16, new_tokens=16)
    assert r["prompt"] >= 960 and r["new_tokens"] == 16
    within(r["used"], generation_bytes(shape, batch, r["prompt"], r["new_tokens"], FP32))


def test_training_step_at_the_cpu_batch_takes_the_fused_head(real_model: Path,
                                                             shape: ModelShape) -> None:
    """The default per-device batch (8) on short rows (one CPU step at 1,024 tokens a row takes
    minutes here; the arithmetic is linear in tokens), loading included: the heavier of loading
    (fp32 weights while the bf16 checkpoint is mapped) and a step (fp32 weights, LoRA with its
    gradients and AdamW moments at 16 bytes a parameter, activations and TRL's fused head)."""
    cfg = TrainConfig()
    r = probe("train", real_model, batch=cfg.per_device_train_batch_size, width=72, response=24)
    assert r["loss_head"] == "fused"
    assert r["lora"] == lora_params(shape, cfg.lora_r)
    step = (r["params"] * FP32 + r["lora"] * 16
            + training_bytes(shape, cfg.per_device_train_batch_size, r["width"], FP32,
                             fused_head=True, checkpointing=False, on_cpu=True))
    load = loading_bytes(r["params"], FP32, (real_model / "model.safetensors").stat().st_size)
    within(r["used"], max(step, load))


def test_the_cpu_defaults_choose_the_fused_head_by_arithmetic(shape: ModelShape) -> None:
    """At the defaults (8 rows x 1,024 tokens) a step with full logits needs 28 GiB on this two-layer
    model, more than this machine has; with the fused head 9 (mostly the activations). The tiny
    model's 2k vocabulary keeps the plain loss, whose logits are smaller than
    the fused head's tiles."""
    cfg = TrainConfig()
    b, w = cfg.per_device_train_batch_size, cfg.max_seq_len
    assert use_fused_head(b, w, shape.vocab, FP32, on_cpu=True)
    fused = training_bytes(shape, b, w, FP32, fused_head=True, checkpointing=False, on_cpu=True)
    plain = training_bytes(shape, b, w, FP32, fused_head=False, checkpointing=False, on_cpu=True)
    assert plain / GIB > 24 and fused < plain / 3
    assert not use_fused_head(b, w, 2048, FP32, on_cpu=True)


def test_cpu_training_recomputes_activations_only_where_they_would_not_fit() -> None:
    """Gemma 3 270M's shape (18 layers of hidden 640, the same vocabulary) at 8 x 1,024 tokens
    keeps about 19 GiB of activations without checkpointing: on a 24 GiB machine the plan turns
    it on; on a 128 GiB one, or with the tiny model's batch, it stays off (a third faster)."""
    g270 = ModelShape(hidden=640, layers=18, vocab=262_144, intermediate=2048, heads=4, kv_heads=1,
                 head_dim=256)
    heavy = training_bytes(g270, 8, 1024, FP32, True, checkpointing=False, on_cpu=True)
    light = training_bytes(g270, 8, 1024, FP32, True, checkpointing=True, on_cpu=True)
    assert heavy / GIB > 16 and light < heavy / 4
    assert training_plan(g270, 8, 1024, FP32, on_cpu=True, memory_bytes=24 * GIB).checkpointing
    assert not training_plan(g270, 8, 1024, FP32, True, 128 * GIB).checkpointing
    assert not training_plan(g270, 2, 128, FP32, True, 24 * GIB).checkpointing
    assert training_plan(g270, 2, 128, FP32, on_cpu=False, memory_bytes=24 * GIB).checkpointing


def test_the_trl_tile_setting_the_cpu_narrows_exists() -> None:
    """fine_tune.train.trl_vocab_tile sets this TRL module constant: an upgrade that renames it
    must fail here, not silently train with 5 GiB tiles."""
    from trl.trainer import utils as trl_utils

    from components.common.memory import CPU_TRAINER_VOCAB_TILE, TRAINER_VOCAB_TILE
    from components.fine_tune.train import trl_vocab_tile

    assert trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == TRAINER_VOCAB_TILE
    with trl_vocab_tile(on_cpu=True):
        assert trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == CPU_TRAINER_VOCAB_TILE
    assert trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == TRAINER_VOCAB_TILE
