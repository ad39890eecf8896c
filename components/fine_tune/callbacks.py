"""Trainer callbacks: throughput and GPU memory on every log line; the best adapter kept.

Why a callback: the HF Trainer logs loss, learning rate and gradient norm, but not tokens per
second between log lines, nor GPU memory. Adding the numbers to the `logs` dict before the W&B
callback sees it puts them on the same step as the loss, in W&B and in `log_history.json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from components.common.progress import Progress


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


class ProgressCallback(TrainerCallback):
    """The step's progress line (`components.common.progress`): step/total, the last logged
    loss, tokens/s since the start and the ETA. Reads only what the Trainer already counts
    (global_step, num_input_tokens_seen, the logged loss): no extra GPU sync. Rank 0 only."""

    def __init__(self, every: float | None = None, clock: Callable[[], float] = time.monotonic,
                 out: Any = None) -> None:
        self.every, self.clock, self.out = every, clock, out
        self.progress: Progress | None = None
        self._tokens = 0
        self._loss: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._tokens = int(state.num_input_tokens_seen or 0)
        self.progress = Progress("fine-tune", "step", state.max_steps, start=state.global_step,
                                 every=self.every, clock=self.clock, out=self.out)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # The last step's line waits for on_train_end: its loss is logged after this call.
        if self.progress is not None and state.global_step < state.max_steps:
            self._update(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self._update(state)
            self.progress.finish()  # stopped early: the line of the step it stopped at

    def _update(self, state: Any) -> None:
        assert self.progress is not None
        self.progress.update(state.global_step, loss=self._loss,
                             tokens=int(state.num_input_tokens_seen or 0) - self._tokens)


def install_first(trainer: Any, callback: TrainerCallback) -> None:
    """Put `callback` before the reporting callbacks so they log what it adds."""
    trainer.callback_handler.callbacks.insert(0, callback)


BEST_FILE = "best_adapter.safetensors"


class BestAdapterCallback(TrainerCallback):
    """Remembers the adapter weights at the lowest validation loss, to keep them at the end.

    Why not the Trainer's `load_best_model_at_end`: it needs a full checkpoint saved at every
    evaluation (save_steps a multiple of eval_steps) and reloads it from the local disk at the
    end, while checkpointing here uploads each checkpoint to GCS and deletes the local copy, and
    a resumed run starts on another machine. Only the trainable (LoRA) weights are copied, to
    CPU memory: ~50 MB for Gemma 3 1B at r=16 on all linear layers. With checkpointing on, the
    best weights so far ride along in every checkpoint (`BEST_FILE`), so a resume keeps them.
    """

    def __init__(self) -> None:
        self.best_loss: float | None = None
        self.best_step: int | None = None
        self.weights: dict[str, Any] = {}
        self.evaluations = 0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None,
                    model: Any = None, **kwargs: Any) -> None:
        loss = (metrics or {}).get("eval_loss")
        if loss is None or model is None:
            return
        self.evaluations += 1
        if self.best_loss is None or loss < self.best_loss:
            self.best_loss, self.best_step = float(loss), int(state.global_step)
            self.weights = {n: p.detach().to("cpu", copy=True)
                            for n, p in model.named_parameters() if p.requires_grad}

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Into the checkpoint the Trainer just wrote (before it is uploaded)."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.weights and folder.is_dir():
            self.save(folder / BEST_FILE)

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({n: w.contiguous() for n, w in self.weights.items()}, str(path),
                  metadata={"step": str(self.best_step), "eval_loss": repr(self.best_loss)})

    def load(self, path: Path) -> bool:
        """Take over the best weights saved in a checkpoint (a resumed run); False if none."""
        if not path.is_file():
            return False
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            self.weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        self.best_step, self.best_loss = int(meta["step"]), float(meta["eval_loss"])
        return True

    def restore(self, model: Any) -> None:
        """Put the best weights back into `model` (same parameter names)."""
        import torch

        params = dict(model.named_parameters())
        missing = [n for n in self.weights if n not in params]
        if missing:
            raise RuntimeError(f"best adapter weights do not fit the model: {missing[:3]}")
        with torch.no_grad():
            for name, w in self.weights.items():
                params[name].copy_(w.to(params[name].device, params[name].dtype))
