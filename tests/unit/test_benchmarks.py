"""The benchmarks run (timings are not asserted: they live in benchmarks/, not in tests)."""

from __future__ import annotations

import json
import math

from benchmarks import gpu_lora, train_throughput


def test_gpu_benchmark_smoke_runs_on_cpu(capsys):
    summary = gpu_lora.main(["--smoke"])
    out = capsys.readouterr().out
    assert summary["device"] == "cpu" and summary["params"] > 0
    assert '"mode": "padded"' in out and '"mode": "packed"' in out
    best = summary["best"]
    assert math.isfinite(best["loss"]) and best["tokens_per_s"] > 0
    assert best["mfu"] is None and "l4_projection" not in summary  # no peak FLOP/s for a CPU
    assert summary["profile"] == "default" and summary["planned_total_gib"] == 5.86


def test_gpu_benchmark_takes_the_qlora_profile(capsys):
    """The 4B QLoRA profile's path (NF4 through the project's loader, k-bit preparation, bf16
    adapter) on the tiny config: bitsandbytes runs NF4 on CPU."""
    import bitsandbytes as bnb

    summary = gpu_lora.main(["--smoke", "--profile", "4b-qlora"])
    assert summary["profile"] == "4b-qlora" and math.isfinite(summary["best"]["loss"])
    model, _ = gpu_lora.build(gpu_lora.text_config("google/gemma-3-4b-it", True), "none",
                              True, True, "")
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def test_the_smoke_config_fits_the_packed_cpu_kernel_like_the_real_sizes():
    """On a CPU with AVX-512 BF16 the smoke QLoRA run takes bitsandbytes' packed 4-bit kernel
    for every layer, as a real Gemma 3 would, not only the fallback for misfit layers."""
    from components.common.modeling import packed_cpu_kernel_refusal
    from planning.gemma3 import Text

    c = gpu_lora.text_config("google/gemma-3-4b-it", True)
    text = Text(hidden=c.hidden_size, layers=c.num_hidden_layers, vocab=c.vocab_size,
                intermediate=c.intermediate_size, heads=c.num_attention_heads,
                kv_heads=c.num_key_value_heads, head_dim=c.head_dim)
    for layer, (k, n) in text.linear_shapes.items():
        assert packed_cpu_kernel_refusal(n, k, 64) == "", layer


def test_throughput_benchmark_compares_identical_training(capsys):
    ratio = train_throughput.main(["--steps", "2", "--rounds", "1", "--max-seq-len", "256"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"ratio={ratio:.2f}" and ratio > 0
    project, naive = (line for line in lines if line.startswith("round 1"))
    # same batches, same masked loss: the two paths see the same tokens and reach the same loss
    assert project.split()[3] == naive.split()[3]
    # ... up to float summation order (other padding, other shapes: measured 1e-8 relative),
    # compared in full precision: the printed 4 decimals could round the two apart.
    assert json.loads(lines[-2])["loss_rel_diff"] < 1e-4


def test_gate_minimum_benchmark_shows_few_rows_pass_too_often(capsys):
    """The evidence behind gate_min_rows: with no real effect, 2 test rows pass the gate far
    more often than 30 do (nominal 2.5%)."""
    from benchmarks import gate_min_rows

    out = gate_min_rows.main(["--trials", "100", "--samples", "200", "--sizes", "2", "30"])
    assert set(out) == {2, 30}
    for shape in ("normal", "t3", "skewed"):
        assert out[2][f"BCa {shape}"] > out[30][f"BCa {shape}"] + 0.05, (shape, out)
    assert all(out[30][f"{m} ms"] > 0 for m in ("BCa", "percentile", "studentized"))  # side by side
    assert 0 <= out[30]["studentized skewed-1"] <= 1
    assert "false passes of the gate" in capsys.readouterr().out


def test_prepare_speed_benchmark_runs_small(capsys):
    from benchmarks import prepare_speed

    best = prepare_speed.main(["--rows", "600", "--rounds", "1"])
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    assert out["rows"] == 600 and out["vocabulary"] == 262_144 and best > 0
    assert out["near_duplicate_rows"] > 0 and set(out["stages"]) >= {"tokenize", "minhashes"}
