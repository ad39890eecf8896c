"""GPU LoRA throughput for the real Gemma 3 1B architecture: tokens/s, MFU, peak memory, cost.

Builds Gemma 3 1B from its real configuration (random weights, no download), bf16, LoRA on all
linear layers with the project's defaults, and trains it the way the project's training path
does on GPU: TRL's fused LM head (never materialises the 262k-vocabulary logits), gradient
checkpointing, AdamW. Measures sequence lengths 512-2048, padded rows vs padding-free packing
(one row of concatenated sequences, position_ids, SDPA), and the memory of 8 x 1024 with and
without the fused head. MFU = 4 x params x tokens/s / peak bf16 FLOP/s.

    python benchmarks/gpu_lora.py              # on a CUDA GPU (a few minutes)
    uv run python benchmarks/gpu_lora.py --smoke   # tiny config on CPU, checks that it runs
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

# Dense bf16 peak FLOP/s per GPU (vendor datasheets, without sparsity).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}
L4_PRICE_PER_HOUR = 0.70
DOLLY_EPOCH_TOKENS = 3_000_000


def gemma3_1b_config(smoke: bool) -> Any:
    from transformers import Gemma3TextConfig

    if smoke:
        return Gemma3TextConfig(
            vocab_size=2048, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=64,
            layer_types=["sliding_attention", "full_attention"], max_position_embeddings=4096,
        )
    layers = 26
    return Gemma3TextConfig(  # google/gemma-3-1b-it's config.json
        vocab_size=262144, hidden_size=1152, intermediate_size=6912, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
        layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                     for i in range(layers)],
        max_position_embeddings=32768, query_pre_attn_scalar=256, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )


def gpu_name() -> tuple[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "cpu", None
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    return name, peak


def build(smoke: bool, fused: bool) -> tuple[Any, int]:
    import torch
    from peft import get_peft_model
    from transformers import Gemma3ForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from components.common.config import TrainConfig
    from components.fine_tune.train import lora_config

    device = "cpu" if smoke else "cuda"
    dtype = torch.float32 if smoke else torch.bfloat16
    config = gemma3_1b_config(smoke)
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = Gemma3ForCausalLM._from_config(config, dtype=dtype)
    params = sum(p.numel() for p in model.parameters())
    model.config.use_cache = False
    if fused:
        add_fused_lm_head(model)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = get_peft_model(model, lora_config(TrainConfig()))
    return model, params


def batch_for(bsz: int, seqlen: int, vocab: int, packed: bool, device: str) -> dict[str, Any]:
    """Random tokens; labels on the second half of each sequence (a response-only loss)."""
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (bsz, seqlen), generator=g)
    labels = ids.clone()
    labels[:, : seqlen // 2] = -100
    if packed:  # bsz sequences of varied lengths concatenated into one row, position_ids restart
        lengths = torch.linspace(seqlen * 0.5, seqlen * 1.5, bsz).long()
        lengths[-1] = bsz * seqlen - lengths[:-1].sum()
        pos = torch.cat([torch.arange(int(n)) for n in lengths])[None]
        lab = ids.reshape(1, -1).clone()
        lab[pos < (lengths.repeat_interleave(lengths)[None] // 2)] = -100
        return {"input_ids": ids.reshape(1, -1).to(device), "position_ids": pos.to(device),
                "labels": lab.to(device)}
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": labels.to(device)}


def measure(model: Any, batch: dict[str, Any], fused: bool, steps: int, warmup: int) -> dict:
    import torch

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    cuda = batch["input_ids"].is_cuda
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    kwargs = {"fused_lm_head": True} if fused else {}

    def step() -> float:
        loss = model(**batch, **kwargs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = batch["input_ids"].numel() * steps
    return {
        "tokens_per_s": tokens / seconds,
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "loss": loss,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tokens-per-step", type=int, default=8192)
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.warmup, args.tokens_per_step = 1, 1, 256
    elif not torch.cuda.is_available():
        parser.error("no CUDA GPU: use --smoke on CPU")
    device = "cpu" if args.smoke else "cuda"
    name, peak = gpu_name()
    seqlens = [64, 128] if args.smoke else [512, 1024, 2048]
    rows: list[dict[str, Any]] = []
    model, params = build(args.smoke, fused=True)
    vocab = model.config.vocab_size
    print(f"device={name} params={params:,} peak_bf16={peak}", flush=True)
    for packed in (False, True):
        for seqlen in seqlens:
            bsz = max(1, args.tokens_per_step // seqlen)
            r = measure(model, batch_for(bsz, seqlen, vocab, packed, device), True, args.steps,
                        args.warmup)
            r |= {"mode": "packed" if packed else "padded", "seqlen": seqlen, "batch": bsz}
            r["mfu"] = 4 * params * r["tokens_per_s"] / peak if peak else None
            rows.append(r)
            print(json.dumps(r), flush=True)
    # memory per batch size at 1024 (fused): the largest batch that fits an L4 is read off a line
    # fitted to measured peaks, not guessed
    probe_len = 128 if args.smoke else 1024
    by_batch = {}
    for bsz in (2, 4, 8, 16):
        r = measure(model, batch_for(bsz, probe_len, vocab, False, device), True, 1, 1)
        by_batch[bsz] = r["peak_mem_gb"]
    fit = None
    if all(v is not None for v in by_batch.values()):
        slope = (by_batch[16] - by_batch[2]) / 14
        base = by_batch[2] - 2 * slope
        fit = {"gb_fixed": round(base, 2), "gb_per_row": round(slope, 3),
               "max_rows_in_22gb_of_l4": int((22 - base) // slope)}
    print(json.dumps({f"peak_mem_gb_by_batch_x{probe_len}": by_batch, "l4_fit": fit}),
          flush=True)
    mem = {}
    for fused in (True, False):
        if not fused:
            del model
            model, _ = build(args.smoke, fused=False)
        r = measure(model, batch_for(8, probe_len, vocab, False, device), fused, 1, 1)
        mem["fused" if fused else "full_logits"] = r["peak_mem_gb"]
    print(json.dumps({f"batch_8x{probe_len}_peak_mem_gb": mem}), flush=True)
    best = max((r for r in rows if r["seqlen"] == (128 if args.smoke else 1024)),
               key=lambda r: r["tokens_per_s"])
    summary: dict[str, Any] = {"device": name, "params": params, "best_at_1024": best,
                               "memory_8x1024_gb": mem, "l4_fit": fit}
    if best["mfu"]:
        l4_tps = best["mfu"] * PEAK_BF16["L4"] / (4 * params)
        hours = DOLLY_EPOCH_TOKENS / l4_tps / 3600
        summary["l4_projection"] = {
            "assumes_same_mfu": round(best["mfu"], 3), "tokens_per_s": round(l4_tps),
            "epoch_hours": round(hours, 2), "epoch_cost_usd": round(hours * L4_PRICE_PER_HOUR, 2),
        }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
