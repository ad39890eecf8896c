"""CPU training throughput: the project's training path vs a naive Hugging Face fine-tune.

Both train LoRA adapters on the tiny Gemma 3 and the embedded Dolly sample with the same model,
data, batches (the project's length-bucketed sampler, same seed), steps, learning rate and loss
masking, so their held-out losses agree. The one difference is what the project does on purpose:
each batch is padded only to its own longest row (and the rows of a batch have nearly one
length, `components/fine_tune/sampling.py`), where the naive Trainer pads every batch to
`max_seq_len`. Runs alternate A, B, A, B in one process; the best round of each is compared.
Throughput is non-pad tokens per second of the whole `trainer.train()` call, over one epoch of
the sample by default (a shorter run is dominated by the first step's warm-up).

    uv run python benchmarks/train_throughput.py            # last line: ratio=<number>
    uv run python benchmarks/train_throughput.py --steps 10 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from components.common.config import DataConfig, TrainConfig
from components.common.generation import response_losses
from components.common.modeling import load_model, load_tokenizer
from components.evaluate.metrics import token_weighted_loss
from components.fine_tune.sampling import LengthBucketedSampler
from components.fine_tune.train import lora_config, train
from components.prepare_data.prepare import prepare

MODEL = "embedded://tiny-gemma3"


def naive_train(cfg: TrainConfig, rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """Plain transformers Trainer: every batch padded to max_seq_len, full logits, full loss
    computed by the model (labels -100 outside the response, as in the project)."""
    import datasets
    import torch
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments, default_data_collator

    tok = load_tokenizer(MODEL, padding_side="right")
    torch.manual_seed(cfg.seed)
    model = get_peft_model(load_model(MODEL, device="cpu"), lora_config(cfg))

    def encode(row: dict[str, Any]) -> dict[str, Any]:
        msgs = row["messages"]
        prompt = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(msgs, tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = tok(full, add_special_tokens=False)["input_ids"]
        pad = cfg.max_seq_len - len(ids)
        return {
            "input_ids": ids + [tok.pad_token_id] * pad,
            "attention_mask": [1] * len(ids) + [0] * pad,
            "labels": [-100] * len(p_ids) + ids[len(p_ids) :] + [-100] * pad,
            "length": len(ids),
        }

    ds = datasets.Dataset.from_list([encode(r) for r in rows])
    args = TrainingArguments(
        output_dir=str(out / "work"),
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,
        max_steps=cfg.max_steps,
        max_grad_norm=cfg.max_grad_norm,
        use_cpu=True,
        bf16=False,
        seed=cfg.seed,
        data_seed=cfg.seed,
        train_sampling_strategy="group_by_length",  # same batches as the project path
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
    )
    class SameBatchesTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            # The project's sampler over the real lengths: both paths see identical batches.
            return LengthBucketedSampler(ds["length"], self.args.train_batch_size)

    trainer = SameBatchesTrainer(model=model, args=args, train_dataset=ds,
                                 data_collator=_drop_length(default_data_collator))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    tokens = int(trainer.state.num_input_tokens_seen)
    return {"model": model, "tokens": tokens, "seconds": seconds}


def _drop_length(collate):
    def fn(features):
        return collate([{k: v for k, v in f.items() if k != "length"} for f in features])
    return fn


def heldout_loss(model: Any, rows: list[dict[str, Any]]) -> float:
    tok = load_tokenizer(MODEL, padding_side="right")
    model.eval()
    return token_weighted_loss(response_losses(model, tok, [r["messages"] for r in rows]))


def project_train(cfg: TrainConfig, rows, out: Path) -> dict[str, Any]:
    from peft import PeftModel

    result = train(cfg, rows, [], out / "adapter")
    m = result.metrics
    model = PeftModel.from_pretrained(load_model(MODEL, device="cpu"), out / "adapter")
    return {"model": model, "tokens": m.train_tokens, "seconds": m.train_seconds}


def main(argv: list[str] | None = None) -> float:
    import torch

    torch.set_flush_denormal(True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps; 0 = one epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=1024,
                        help="the pipeline default; the naive baseline pads every batch to it")
    args = parser.parse_args(argv)

    tok = load_tokenizer(MODEL)
    splits = prepare(DataConfig(dataset="embedded://dolly-15k-sample.jsonl", base_model=MODEL,
                                max_seq_len=args.max_seq_len, val_fraction=0.1,
                                test_fraction=0.05), tok).splits
    steps = args.steps or math.ceil(len(splits["train"]) / args.batch_size)
    cfg = TrainConfig(base_model=MODEL, max_seq_len=args.max_seq_len, max_steps=steps,
                      per_device_train_batch_size=args.batch_size,
                      gradient_accumulation_steps=1, learning_rate=3e-3, warmup_ratio=0.0,
                      lora_dropout=0.0, logging_steps=steps)
    results: dict[str, list[dict[str, Any]]] = {"project": [], "naive": []}
    for r in range(args.rounds):
        for name, fn in (("project", project_train), ("naive", naive_train)):
            with tempfile.TemporaryDirectory() as d:
                res = fn(cfg, splits["train"], Path(d))
            res["tps"] = res["tokens"] / res["seconds"]
            res["loss"] = heldout_loss(res.pop("model"), splits["validation"])
            results[name].append(res)
            print(f"round {r + 1} {name:8s} {res['tokens']:>7d} non-pad tokens in "
                  f"{res['seconds']:6.1f} s = {res['tps']:8.0f} tok/s, held-out loss "
                  f"{res['loss']:.4f}", flush=True)
    best = {k: max(v, key=lambda x: x["tps"]) for k, v in results.items()}
    ratio = best["project"]["tps"] / best["naive"]["tps"]
    loss_gap = abs(best["project"]["loss"] - best["naive"]["loss"]) / best["naive"]["loss"]
    print(json.dumps({
        "project_tokens_per_s": round(best["project"]["tps"], 1),
        "naive_tokens_per_s": round(best["naive"]["tps"], 1),
        "project_heldout_loss": round(best["project"]["loss"], 4),
        "naive_heldout_loss": round(best["naive"]["loss"], 4),
        "loss_rel_diff": round(loss_gap, 4),
        "ratio_per_round": [round(p["tps"] / n["tps"], 2)
                            for p, n in zip(results["project"], results["naive"], strict=True)],
        "steps": steps, "batch_size": args.batch_size, "max_seq_len": args.max_seq_len,
    }))
    print(f"ratio={ratio:.2f}")
    assert math.isfinite(ratio)
    return ratio


if __name__ == "__main__":
    main()
