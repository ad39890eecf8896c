"""Trainer callback that adds throughput and GPU memory to every training log line.

Why a callback: the HF Trainer logs loss, learning rate and gradient norm, but not tokens per
second between log lines, nor GPU memory. Adding the numbers to the `logs` dict before the W&B
callback sees it puts them on the same step as the loss, in W&B and in `log_history.json`.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback


class ThroughputCallback(TrainerCallback):
    """Adds `tokens_per_second` (non-padding tokens since the last log) and, on GPU,
    `gpu_memory_allocated_gb` / `gpu_max_memory_allocated_gb`."""

    def __init__(self) -> None:
        self._t = time.perf_counter()
        self._tokens = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._t, self._tokens = time.perf_counter(), int(state.num_input_tokens_seen or 0)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if logs is None or "loss" not in logs:
            return  # eval and end-of-training lines carry no step throughput
        now, tokens = time.perf_counter(), int(state.num_input_tokens_seen or 0)
        extra: dict[str, float] = {}
        if now > self._t and tokens > self._tokens:
            extra["tokens_per_second"] = round((tokens - self._tokens) / (now - self._t), 1)
        self._t, self._tokens = now, tokens
        import torch

        if torch.cuda.is_available():
            extra["gpu_memory_allocated_gb"] = round(torch.cuda.memory_allocated() / 2**30, 3)
            extra["gpu_max_memory_allocated_gb"] = round(
                torch.cuda.max_memory_allocated() / 2**30, 3
            )
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)


def install_first(trainer: Any, callback: TrainerCallback) -> None:
    """Put `callback` before the reporting callbacks so they log what it adds."""
    trainer.callback_handler.callbacks.insert(0, callback)
