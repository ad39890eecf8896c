"""Batched scoring and generation shared by the evaluate and inference steps.

Why shared: evaluation and inference must decode the same way, or their numbers disagree.
Generation uses left padding and the KV cache; scoring masks the prompt so loss is measured on
the response tokens only, exactly what training optimised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    # Seconds from the start of its batch's generate() until this row's last token: when its
    # answer was complete (rows that stop early finish early; the batch ends with its longest).
    latency_s: float
    # Seconds until the batch's first new token (prefill): the same for every row of a batch.
    first_token_s: float = 0.0


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The chat-formatted prompt up to the model's next turn: a conversation that ends on an
    assistant turn (a training row) without that turn, earlier turns kept (multi-turn)."""
    turns = messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


def response_losses(
    model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], batch_size: int = 8
) -> list[tuple[float, int]]:
    """(summed NLL over response tokens, number of response tokens) per conversation.

    Never batch x width x vocabulary at once: the backbone gives the hidden states, only the
    response positions are kept, and TRL's chunked log-probability kernel projects them through
    the LM head a tile at a time (`components.common.memory.scoring_bytes`). With Gemma 3's
    262,144-token vocabulary the full logits of 16 rows of 1,024 tokens would be 48 GiB."""
    import torch
    from trl.kernels import ChunkedLogProbFunction

    from components.common.memory import VOCAB_TILE

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone, head = base.base_model, base.get_output_embeddings()  # LoRA layers live inside
    softcap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
    device = head.weight.device
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
        targets = lab[:, 1:]
        valid = targets != -100
        with torch.no_grad():
            hidden = backbone(input_ids=ids, attention_mask=mask, use_cache=False)
            picked = hidden.last_hidden_state[:, :-1][valid]  # response positions only
            del hidden
            logprobs = ChunkedLogProbFunction.apply(
                picked, head.weight, head.bias, targets[valid], 1.0, VOCAB_TILE, softcap, 1.0, ()
            )[0]
        counts = valid.sum(dim=1).tolist()
        for nll, n in zip(torch.split(-logprobs.double(), counts), counts, strict=True):
            out.append((float(nll.sum()), int(n)))
    return out


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int = 16,
    temperature: float = 0.0,
    top_p: float = 1.0,
    timing: dict[str, float] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Generate for chat-formatted `prompts` in batches (left padding, KV cache).

    Generation stops at the model's end of turn (its chat template's closing token, e.g.
    Gemma's `<end_of_turn>`) as well as at `generation_config.eos_token_id`. Each row's latency
    is measured when its own last token is produced, not when its batch ends. `timing`, when
    given, receives the seconds spent in generate() alone (no loading, no tokenizing);
    `on_batch`, the number of rows each finished batch held (a progress line)."""
    import torch
    from transformers import StoppingCriteriaList

    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    sampling = temperature > 0
    stop = set(_stop_ids(model, tokenizer))
    eos = sorted(stop - {tokenizer.pad_token_id}) or None
    results: list[Generation] = []
    total = 0.0
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(
            device
        )
        clock = _FinishClock(stop, len(batch))
        t0 = clock.start()
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=sampling,
                temperature=temperature if sampling else None,
                top_p=top_p if sampling else None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos,
                stopping_criteria=StoppingCriteriaList([clock]),
                use_cache=True,
            )
        end = time.perf_counter()
        total += end - t0
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
                    latency_s=round(clock.finished(i, end) - t0, 4),
                    first_token_s=round((clock.first or end) - t0, 4),
                )
            )
        if on_batch is not None:
            on_batch(len(batch))
    if timing is not None:
        timing["generation_seconds"] = timing.get("generation_seconds", 0.0) + total
    return results


class _FinishClock:
    """A stopping criterion that never stops anything: it notes when each row of the batch
    produced a stop token (its answer was complete) and when the first new token came.

    Why: generate() returns a whole batch at once, so the batch's wall time is every row's
    latency (p50 = p95); the time each row finished is what a streaming caller waits for."""

    def __init__(self, stop: set[int], rows: int) -> None:
        self.stop = stop
        self.done: list[float | None] = [None] * rows
        self.first: float | None = None

    def start(self) -> float:
        return time.perf_counter()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        now = time.perf_counter()
        if self.first is None:
            self.first = now
        for i, tok in enumerate(input_ids[:, -1].tolist()):
            if self.done[i] is None and tok in self.stop:
                self.done[i] = now
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def finished(self, i: int, end: float) -> float:
        return self.done[i] if self.done[i] is not None else end


# Closing tokens of common chat templates, for a template whose closing token cannot be read
# off a rendered turn (e.g. it strips the content).
KNOWN_END_OF_TURN = ("<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end|>")
_MARK = "ZQXJ7MARK"


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The token(s) that close the model's turn in the tokenizer's chat template.

    Read off the template itself: render one assistant turn and take the first special token
    after its content (Gemma: `<end_of_turn>`, Llama 3: `<|eot_id|>`, ChatML: `<|im_end|>`);
    known closing tokens the tokenizer has are added too."""
    added = tokenizer.get_added_vocab() if hasattr(tokenizer, "get_added_vocab") else {}
    special = set(added.values()) | set(getattr(tokenizer, "all_special_ids", []) or [])
    found: list[int] = []
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARK}],
            tokenize=False,
        )
    except Exception:  # noqa: BLE001 - a template that cannot render a turn: use known names
        text = ""
    if _MARK in text:
        after = text.split(_MARK, 1)[1]
        for tok in tokenizer(after, add_special_tokens=False)["input_ids"]:
            if tok in special:
                found.append(tok)
                break
            if tokenizer.decode([tok]).strip():
                break  # plain text after the content: no closing token to find here
    found += [added[name] for name in KNOWN_END_OF_TURN if name in added]
    return list(dict.fromkeys(found))


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """Where an answer ends: the model's EOS tokens, as `generate()` itself and any server
    (vLLM, `transformers serve`) stop, so batch and served answers agree token for token.
    The pad token only when the model names no EOS (after EOS, generate() pads anyway)."""
    eos = model.generation_config.eos_token_id
    ids = [i for i in (eos if isinstance(eos, list) else [eos]) if i is not None]
    ids += [i for i in end_of_turn_ids(tokenizer) if i not in ids]
    return ids or [tokenizer.pad_token_id]
