"""Batched scoring and generation shared by the evaluate and inference steps.

Why shared: evaluation and inference must decode the same way, or their numbers disagree.
Generation uses left padding and the KV cache; scoring masks the prompt so loss is measured on
the response tokens only, exactly what training optimised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The chat-formatted prompt up to the model's turn (system/user messages only)."""
    turns = [m for m in messages if m["role"] != "assistant"]
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


def response_losses(
    model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], batch_size: int = 8
) -> list[tuple[float, int]]:
    """(summed NLL over response tokens, number of response tokens) per conversation."""
    import torch

    device = next(model.parameters()).device
    out: list[tuple[float, int]] = []
    for start in range(0, len(conversations), batch_size):
        batch = conversations[start : start + batch_size]
        full_ids, labels = [], []
        for msgs in batch:
            prompt = tokenizer(prompt_text(tokenizer, msgs), add_special_tokens=False)["input_ids"]
            full = tokenizer(
                tokenizer.apply_chat_template(msgs, tokenize=False), add_special_tokens=False
            )["input_ids"]
            full_ids.append(full)
            labels.append([-100] * len(prompt) + full[len(prompt) :])
        width = max(len(x) for x in full_ids)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([x + [pad] * (width - len(x)) for x in full_ids], device=device)
        mask = torch.tensor(
            [[1] * len(x) + [0] * (width - len(x)) for x in full_ids], device=device
        )
        lab = torch.tensor([y + [-100] * (width - len(y)) for y in labels], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
        shift_logits, shift_labels = logits[:, :-1], lab[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            shift_logits.transpose(1, 2), shift_labels, ignore_index=-100, reduction="none"
        )
        valid = shift_labels != -100
        for i in range(len(batch)):
            out.append((float(nll[i][valid[i]].sum()), int(valid[i].sum())))
    return out


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int = 16,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> list[Generation]:
    """Generate for chat-formatted `prompts` in batches (left padding, KV cache)."""
    import torch

    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    sampling = temperature > 0
    stop = set(_stop_ids(model, tokenizer))
    results: list[Generation] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(
            device
        )
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=sampling,
                temperature=temperature if sampling else None,
                top_p=top_p if sampling else None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
                use_cache=True,
            )
        elapsed = time.perf_counter() - t0
        new = out[:, enc["input_ids"].shape[1] :]
        for i in range(len(batch)):
            tokens = new[i]
            n = 0
            for tok in tokens.tolist():
                n += 1
                if tok in stop:
                    break
            results.append(
                Generation(
                    text=tokenizer.decode(tokens[:n], skip_special_tokens=True).strip(),
                    prompt_tokens=int(enc["attention_mask"][i].sum()),
                    completion_tokens=n,
                    latency_s=round(elapsed, 4),
                )
            )
    return results


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """Where an answer ends: the model's EOS tokens, as `generate()` itself and any server
    (vLLM, `transformers serve`) stop, so batch and served answers agree token for token.
    The pad token only when the model names no EOS (after EOS, generate() pads anyway)."""
    eos = model.generation_config.eos_token_id
    ids = [i for i in (eos if isinstance(eos, list) else [eos]) if i is not None]
    return ids or [tokenizer.pad_token_id]
