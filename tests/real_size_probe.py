"""One phase of a step at real size, in a process of its own, with its peak memory measured.

    python -m tests.real_size_probe {score,generate,train} MODEL_DIR --batch B --width W ...

Prints one JSON line: the resident memory when the phase started (the model loaded, torch
imported), the phase's peak (VmHWM after resetting it through /proc/self/clear_refs, so what
loading took does not count) and its seconds. A fresh process per phase, so one phase's freed
memory, kept by the allocator, never hides in another's peak.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def reset_peak() -> int:
    """Reset the peak resident set to the current one; returns the current one (KiB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def rows_of(tokenizer: Any, batch: int, width: int, response: int) -> list[list[dict[str, str]]]:
    """`batch` conversations of about `width` tokens, the last `response` of them the answer."""
    word = "alpha beta gamma delta "
    per = len(tokenizer(word, add_special_tokens=False)["input_ids"])
    answer = word * max(1, response // per)

    def conv(i: int, n: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"{i} {word * n}"},
                {"role": "assistant", "content": answer}]

    def length(c: list[dict[str, str]]) -> int:
        text = tokenizer.apply_chat_template(c, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    n = max(1, (width - response) // per)
    n -= -(-(length(conv(0, n)) - width) // per)  # one correction: at most `width` tokens
    return [conv(i, max(1, n)) for i in range(batch)]


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["score", "generate", "train"])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--response", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    from components.common.generation import generate, prompt_text, response_losses
    from components.common.modeling import load_model, load_tokenizer

    tokenizer = load_tokenizer(args.model)
    convs = rows_of(tokenizer, args.batch, args.width, args.response)
    out: dict[str, Any] = {}
    if args.phase == "train":
        import tempfile

        import datasets  # noqa: F401 - the libraries' own memory is not the step's
        import peft  # noqa: F401
        import trl  # noqa: F401

        from components.common.config import TrainConfig
        from components.fine_tune.train import train

        rows = [{"messages": c} for c in convs]
        cfg = TrainConfig(base_model=args.model, max_steps=1, per_device_train_batch_size=args.batch,
                          max_seq_len=args.width, logging_steps=1, wandb_project="")
        start = reset_peak()
        t0 = time.perf_counter()
        result = train(cfg, rows, [], Path(tempfile.mkdtemp()))
        m = result.metrics
        out.update(loss_head=m.loss_head, train_loss=m.train_loss,
                   params=m.total_params - m.trainable_params, lora=m.trainable_params)
    else:
        model = load_model(args.model, device="cpu").eval()
        start = reset_peak()
        t0 = time.perf_counter()
        if args.phase == "score":
            losses = response_losses(model, tokenizer, convs, batch_size=args.batch)
            out["response_tokens"] = sum(n for _, n in losses)
            out["loss"] = sum(s for s, _ in losses) / out["response_tokens"]
        else:
            tokenizer.padding_side = "left"
            gens = generate(model, tokenizer, [prompt_text(tokenizer, c) for c in convs],
                            max_new_tokens=args.new_tokens, batch_size=args.batch)
            out["new_tokens"] = max(g.completion_tokens for g in gens)
        out["params"] = sum(p.numel() for p in model.parameters())
    widths = [len(tokenizer(tokenizer.apply_chat_template(c, tokenize=False),
                            add_special_tokens=False)["input_ids"]) for c in convs]
    out.update(seconds=round(time.perf_counter() - t0, 2), start_kib=start,
               peak_kib=_status_kib("VmHWM"), width=max(widths),
               prompt=max(len(tokenizer(prompt_text(tokenizer, c), add_special_tokens=False)
                              ["input_ids"]) for c in convs))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
