"""GPU LoRA / QLoRA throughput of a profile: tokens/s, MFU, peak memory vs the memory arithmetic.

Builds the profile's Gemma 3 language model from its architecture (planning/gemma3.py; random
weights, no download), loads it the way the training step does (bf16, or NF4 through the project's
own `load_model(quantization="nf4")` + PEFT k-bit preparation), puts LoRA on every Linear with the
project's settings and trains like the GPU path: TRL's fused LM head (never the 262k-vocabulary
logits), gradient checkpointing, AdamW. Measured at the profile's per-device batch and sequence
length, padding-free packed rows (the GPU default) and padded rows side by side; then peak memory
by batch size (the largest batch that fits is read off a line fitted to the peaks) and, at the
profile's batch, the fused head against full logits. MFU = 4 x params x tokens/s / peak bf16
FLOP/s. The summary's `throughput_row` is what goes into THROUGHPUT in planning/throughput.py,
marked measured with the GPU and the date. (The 4B/12B checkpoints also carry a 0.4B-parameter
vision tower, ~0.2 GiB in NF4, which this text-only build leaves out.)

    python benchmarks/gpu_lora.py --profile default --seq-len 1024   # Gemma 3 1B LoRA
    python benchmarks/gpu_lora.py --profile 4b-qlora                  # Gemma 3 4B QLoRA
    uv run python benchmarks/gpu_lora.py --smoke [--profile 4b-qlora] # tiny config on CPU
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from typing import Any

# Dense bf16 peak FLOP/s per GPU (vendor datasheets, without sparsity).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def text_config(base_model: str, smoke: bool) -> Any:
    from transformers import Gemma3TextConfig

    from planning.gemma3 import text_config as checkpoint_config

    if smoke:
        # Every Linear a multiple of 32 wide, 64 deep, like the real sizes: on a CPU with AVX-512
        # BF16 bitsandbytes' packed 4-bit kernel takes them all (see modeling.py), as it would
        # the real model's, instead of the smoke run testing only the generic fallback.
        return Gemma3TextConfig(
            vocab_size=2048, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=1, head_dim=32, sliding_window=64,
            layer_types=["sliding_attention", "full_attention"], max_position_embeddings=4096,
        )
    return checkpoint_config(base_model)


def gpu_name() -> tuple[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "cpu", None
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    return name, peak


def build(config: Any, quantization: str, fused: bool, smoke: bool, folder: str) -> Any:
    """(PEFT model, base parameter count), loaded the way components/fine_tune/train.py does."""
    import torch
    from peft import get_peft_model
    from transformers import Gemma3ForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from components.common.config import TrainConfig
    from components.common.modeling import load_model
    from components.fine_tune.train import lora_config, prepare_quantized

    device = "cpu" if smoke else "cuda"
    if quantization == "nf4":  # through the project's loader: quantized while loading
        model = load_model(folder, bf16=not smoke, device=device, quantization="nf4")
        params = sum(
            p.numel() * (2 if p.dtype == torch.uint8 else 1) for p in model.parameters())
        model = prepare_quantized(model, on_gpu=not smoke)
    else:
        dtype = torch.float32 if smoke else torch.bfloat16
        config._attn_implementation = "sdpa"
        with torch.device(device):
            model = Gemma3ForCausalLM._from_config(config, dtype=dtype)
        params = sum(p.numel() for p in model.parameters())
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    if fused:
        add_fused_lm_head(model)
    model = get_peft_model(model, lora_config(TrainConfig()))
    if quantization == "nf4":  # TRL keeps a QLoRA adapter in bf16
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
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


def measure(model: Any, batch: dict[str, Any], fused: bool, steps: int, warmup: int,
            bf16: bool) -> dict[str, Any]:
    """tokens/s and peak memory of `steps` optimizer steps; None values after out-of-memory."""
    import contextlib

    import torch

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    cuda = batch["input_ids"].is_cuda
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    kwargs = {"fused_lm_head": True} if fused else {}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and bf16 else \
        contextlib.nullcontext()

    def step() -> float:
        with autocast:
            loss = model(**batch, **kwargs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    try:
        for _ in range(warmup):
            step()
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        if cuda:
            torch.cuda.synchronize()
    except torch.OutOfMemoryError:
        opt.zero_grad(set_to_none=True)
        return {"tokens_per_s": None, "peak_mem_gb": None, "loss": None, "oom": True}
    seconds = time.perf_counter() - t0
    tokens = batch["input_ids"].numel() * steps
    return {
        "tokens_per_s": tokens / seconds,
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "loss": loss,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from planning.memory import budget
    from planning.profiles import GPU_PROFILES as PROFILES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=list(PROFILES), default="default")
    parser.add_argument("--seq-len", type=int, help="[the profile's max_seq_len]")
    parser.add_argument("--batch", type=int, help="[the profile's per-device batch]")
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    prof = PROFILES[args.profile]
    seqlen = args.seq_len or prof.params["max_seq_len"]
    bsz = args.batch or prof.params["per_device_train_batch_size"]
    quant = prof.params["quantization"]
    if args.smoke:
        args.steps, args.warmup, seqlen, bsz = 1, 1, 64, 2
    elif not torch.cuda.is_available():
        parser.error("no CUDA GPU: use --smoke on CPU")
    device = "cpu" if args.smoke else "cuda"
    name, peak = gpu_name()
    config = text_config(prof.params["base_model"], args.smoke)
    vocab = config.vocab_size

    with tempfile.TemporaryDirectory() as folder:
        if quant == "nf4":  # random bf16 weights on disk, then the project's 4-bit loader
            from transformers import Gemma3ForCausalLM

            with torch.device(device):
                Gemma3ForCausalLM._from_config(config, dtype=torch.bfloat16).save_pretrained(
                    folder)
            if not args.smoke:
                torch.cuda.empty_cache()
        model, params = build(config, quant, True, args.smoke, folder)
        print(json.dumps({"profile": prof.name, "device": name, "params": params,
                          "quantization": quant, "peak_bf16": peak}), flush=True)
        bf16 = not args.smoke
        rows = []
        for packed in (True, False):
            r = measure(model, batch_for(bsz, seqlen, vocab, packed, device), True, args.steps,
                        args.warmup, bf16)
            r |= {"mode": "packed" if packed else "padded", "seqlen": seqlen, "batch": bsz}
            r["mfu"] = 4 * params * r["tokens_per_s"] / peak if peak and r["tokens_per_s"] \
                else None
            rows.append(r)
            print(json.dumps(r), flush=True)
        # peak memory by batch at this length: the largest batch that fits is read off a line
        # fitted to the measured peaks, not guessed
        by_batch = {b: measure(model, batch_for(b, seqlen, vocab, False, device), True, 1, 1,
                               bf16)["peak_mem_gb"] for b in (1, 2, 4, 8)}
        fit = None
        ok = {b: v for b, v in by_batch.items() if v is not None}
        if len(ok) >= 2:
            (b0, m0), (b1, m1) = min(ok.items()), max(ok.items())
            slope = (m1 - m0) / (b1 - b0)
            base = m0 - b0 * slope
            fit = {"gb_fixed": round(base, 2), "gb_per_row": round(slope, 3),
                   f"max_rows_in_{budget(prof.accelerator_type):.2f}_gib":
                       int((budget(prof.accelerator_type) - base) // slope) if slope > 0 else None}
        print(json.dumps({f"peak_mem_gb_by_batch_x{seqlen}": by_batch, "fit": fit}), flush=True)
        mem = {"fused": rows[1]["peak_mem_gb"]}
        del model
        if not args.smoke:
            torch.cuda.empty_cache()
        model, _ = build(config, quant, False, args.smoke, folder)
        mem["full_logits"] = measure(model, batch_for(bsz, seqlen, vocab, False, device), False,
                                     1, 1, bf16)["peak_mem_gb"]
    print(json.dumps({f"batch_{bsz}x{seqlen}_peak_mem_gb": mem}), flush=True)

    best = max((r for r in rows if r["tokens_per_s"]), key=lambda r: r["tokens_per_s"],
               default=rows[0])
    packed = rows[0]
    summary: dict[str, Any] = {
        "profile": prof.name, "device": name, "params": params, "best": best,
        "memory_gb": mem, "memory_fit": fit,
        "planned_total_gib": prof.fit.total,  # the table's arithmetic, for comparison
        "measured_peak_gib": packed["peak_mem_gb"],
    }
    if packed["tokens_per_s"] and not args.smoke:
        summary["throughput_row"] = {
            "key": [prof.name, prof.accelerator_type],
            "train_tokens_per_s_one_gpu": round(packed["tokens_per_s"]),
            "basis": f"measured: benchmarks/gpu_lora.py on 1 x {name}, "
                     f"{dt.date.today().isoformat()}, batch {bsz} x {seqlen} packed, "
                     f"MFU {packed['mfu']:.3f}" if packed["mfu"] else "measured",
        }
        if "L4" not in name and packed["mfu"]:  # another GPU: the L4 figure at the same MFU
            l4 = packed["mfu"] * PEAK_BF16["L4"] / (4 * params)
            summary["l4_projection"] = {"assumes_same_mfu": round(packed["mfu"], 3),
                                        "tokens_per_s": round(l4)}
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main()
