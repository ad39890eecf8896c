"""Fine-tune step: LoRA (PEFT) supervised fine-tuning with TRL, loss on the response tokens only.

Shaped like TRL's `trl/scripts/sft.py`: `train(config, ...)` does the work, the parser is built
from `TrainConfig` (`components.common.step.make_parser`), and the KFP component calls
`run_fine_tune`, which adds the step's bookkeeping (time, secrets, tracking, metadata).

    uv run python -m components.fine_tune.train --train /tmp/prep/train.jsonl \
        --validation /tmp/prep/validation.jsonl --base_model embedded://tiny-gemma3 \
        --max_steps 30 --learning_rate 2e-3 --model /tmp/adapter

(`--help` lists every setting of `TrainConfig`.)
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.config import TrainConfig
from components.common.errors import InputError
from components.common.modeling import (
    best_device,
    bf16_enabled,
    check_target_modules,
    load_model,
    load_tokenizer,
    model_source,
    require_accelerator,
)
from components.common.tracking import DummyRun, scoped_env
from components.fine_tune import checkpointing


@dataclass
class TrainResult:
    metrics: dict[str, Any]
    output_dir: Path


def to_prompt_completion(rows: list[dict[str, Any]]) -> Any:
    """Chat rows -> TRL's conversational prompt/completion format (completion-only loss)."""
    import datasets

    return datasets.Dataset.from_list(
        [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    )


def base_weights_digest(model: Any, max_params: int = 100_000_000) -> str | None:
    """Hash of every frozen (non-LoRA) weight: proves training left the base model untouched.

    None above `max_params`: hashing a 1B model copies 4 GB to the host twice, GPU time that a
    real run should not pay for a check the tests already make on the small model.
    """
    if sum(p.numel() for p in model.parameters()) > max_params:
        return None
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if "lora_" in name:
            continue
        h.update(name.removeprefix("base_model.model.").replace(".base_layer", "").encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def lora_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_module_list,
        task_type="CAUSAL_LM",
    )


def trainer_class() -> Any:
    """TRL's SFTTrainer with whole-epoch length bucketing; on CPU also the model's plain loss.

    Why the plain loss on CPU: TRL computes the loss through a fused, chunked LM head that never
    materialises the logits, which is what lets a 262k-vocabulary model train with a useful batch
    on a 24 GB L4. On CPU there is no memory pressure to relieve, and the chunked path's
    recomputation costs about a quarter of each step, so the plain full-logits loss (identical
    value, see tests/unit/test_batching.py) is the faster fallback there.
    """
    from transformers import Trainer
    from trl import SFTTrainer

    from components.fine_tune.sampling import bucketed_sampler_for

    class BucketedSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            if self.args.train_sampling_strategy == "group_by_length":
                return bucketed_sampler_for(self, train_dataset)  # see sampling.py for why
            return super()._get_train_sampler(train_dataset)

    if best_device() == "cuda":
        return BucketedSFTTrainer

    class PlainLossSFTTrainer(BucketedSFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs["use_cache"] = False
            return Trainer.compute_loss(
                self, model, inputs, return_outputs=return_outputs,
                num_items_in_batch=num_items_in_batch,
            )

    return PlainLossSFTTrainer


def batching_mode(setting: str) -> str:
    """'packed' on a GPU, 'padded' on CPU, unless set explicitly.

    Why: on CPU there is no variable-length attention kernel, so packing only adds a big
    block-diagonal mask; length-bucketed dynamic padding measured fastest there. On a GPU,
    padding-free packing keeps every token useful and each step's token count fixed.
    """
    if setting != "auto":
        return setting
    return "packed" if best_device() == "cuda" else "padded"


def sft_config(cfg: TrainConfig, output_dir: Path, has_eval: bool, report_to: str) -> Any:
    """Hardware-aware SFTConfig.

    GPU: bf16, gradient checkpointing, padding-free best-fit-decreasing packing (rows never cut,
    never attending to each other: position_ids restart per row and `use_cache=False`), and a
    batch that starts at the configured size and halves on out-of-memory (measured, not guessed).
    CPU: fp32 (bf16 is ~10x slower there), no checkpointing, length-bucketed dynamic padding
    (sampling.py). Both: response-only loss; on GPU through TRL's fused LM head, which never
    materialises the full logits (see `trainer_class` for CPU).
    """
    from trl import SFTConfig

    on_gpu = best_device() == "cuda"
    packed = batching_mode(cfg.batching) == "packed"
    return SFTConfig(
        output_dir=str(output_dir),
        max_length=cfg.max_seq_len,
        packing=packed,
        packing_strategy="bfd",
        padding_free=packed,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        auto_find_batch_size=on_gpu,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of total steps
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        bf16=bf16_enabled(cfg.bf16),
        use_cpu=not on_gpu,
        activation_checkpointing=on_gpu,
        completion_only_loss=True,
        train_sampling_strategy="random" if packed else "group_by_length",
        pad_to_multiple_of=None,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps,
        save_strategy="no",
        report_to=report_to,
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
    )


def train(
    cfg: TrainConfig,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
    output_dir: Path,
    tracker: DummyRun | None = None,
    run_name: str = "",
) -> TrainResult:
    """Train a LoRA adapter and save adapter + tokenizer + config + metrics to `output_dir`.

    With `cfg.checkpoint_uri`, checkpoints stream to `<uri>/<run_name>/fine-tune/` and a rerun
    with the same run name resumes from the newest complete one (`checkpointing.py`)."""
    import torch

    from components.fine_tune.callbacks import (
        BEST_FILE,
        BestAdapterCallback,
        ThroughputCallback,
        install_first,
    )

    tracker = tracker or DummyRun()
    if not train_rows:
        raise InputError("the train split is empty; check the prepare step's filters")
    check_target_modules(cfg.base_model, cfg.target_module_list)
    store = checkpointing.open_store(cfg, run_name)  # bad bucket/permissions fail here, early
    # Denormal floats make CPU training slow down several-fold late in a run; flush them to 0.
    torch.set_flush_denormal(True)
    torch.manual_seed(cfg.seed)

    tokenizer = load_tokenizer(cfg.base_model, padding_side="right")
    model = load_model(cfg.base_model, bf16=bf16_enabled(cfg.bf16))
    model.config.use_cache = False  # packed/padded batches stay isolated; no KV cache in training

    # Trainer scratch space stays out of the Model artifact (only the adapter is published).
    work = Path(tempfile.mkdtemp(prefix="fine-tune-"))
    args = sft_config(cfg, work, has_eval=bool(val_rows), report_to=tracker.report_to)
    ckpt = checkpointing.Session(store, cfg, train_rows, work) if store else None
    if ckpt:
        args = ckpt.training_args(args)
    # HF's own report_to integrations (W&B, TensorBoard, MLflow) log the training curves into
    # the runs the tracker opened; TensorBoardCallback reads its folder from the environment.
    with scoped_env(getattr(tracker, "hf_env", dict)()):
        trainer = trainer_class()(
            model=model,
            args=args,
            train_dataset=to_prompt_completion(train_rows),
            eval_dataset=to_prompt_completion(val_rows) if val_rows else None,
            processing_class=tokenizer,
            peft_config=lora_config(cfg),
            callbacks=[ckpt.callback] if ckpt else None,
        )
    best = BestAdapterCallback() if val_rows else None  # keeps the lowest-validation-loss adapter
    if best:
        install_first(trainer, best)  # before the checkpoint upload: its file rides along
    install_first(trainer, ThroughputCallback())  # tokens/s (+ GPU memory) on each log line
    peft_model = trainer.model
    digest_before = base_weights_digest(peft_model)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())

    start = time.perf_counter()
    with checkpointing.during_training(ckpt) as resume_from:
        if resume_from and best:
            best.load(Path(resume_from) / BEST_FILE)
        result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    history = [h for h in trainer.state.log_history if "loss" in h]
    kept = keep_best(trainer, best, peft_model) if best else {}

    output_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    source = model_source(cfg.base_model)
    metrics = {
        "train_loss": result.training_loss,
        "first_logged_loss": history[0]["loss"] if history else None,
        "last_logged_loss": history[-1]["loss"] if history else None,
        # Validation loss of the adapter kept (the best one seen), and of the last step's.
        "eval_loss": kept.get("eval_loss"),
        "eval_perplexity": math.exp(kept["eval_loss"]) if kept.get("eval_loss") is not None else None,
        "final_eval_loss": kept.get("final_eval_loss"),
        "kept_step": kept.get("kept_step", trainer.state.global_step),
        "epochs": round(float(trainer.state.epoch or 0.0), 3),
        "train_rows": len(train_rows),
        "global_step": trainer.state.global_step,
        "train_seconds": round(seconds, 2),
        "train_tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "trainable_params": trainable,
        "total_params": total,
        "base_weights_digest_before": digest_before,
        "base_weights_digest_after": base_weights_digest(peft_model),
        "base_model": source,
        "device": best_device(),
        "bf16": args.bf16,
        "resumed_from_step": None,
        **(ckpt.summary(seconds) if ckpt else {}),
    }
    (output_dir / "training_config.json").write_text(json.dumps({
        **cfg.model_dump(), "base_model": source, "run_name": run_name,
        **({"base_model_path": cfg.base_model} if source != cfg.base_model else {}),
    }, indent=2))
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (output_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=2))
    if ckpt:
        ckpt.publish(output_dir)
    shutil.rmtree(work, ignore_errors=True)  # local checkpoints: the durable copies are in GCS
    tracker.summary({k: v for k, v in metrics.items() if isinstance(v, int | float)})
    return TrainResult(metrics=metrics, output_dir=output_dir)


def keep_best(trainer: Any, best: Any, model: Any) -> dict[str, Any]:
    """Evaluate the last step's adapter (unless that step was just evaluated), then put back the
    weights with the lowest validation loss when they are not the last ones.

    Why: on a small train set many steps overfit (validation loss rises while training loss
    falls); the adapter worth shipping is the one that generalised best, not the last."""
    step = trainer.state.global_step
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    if not evals or evals[-1].get("step") != step:
        trainer.evaluate()  # BestAdapterCallback sees this one too
        evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    final = evals[-1]["eval_loss"] if evals else None
    if best.best_step is None:
        return {"eval_loss": final, "final_eval_loss": final, "kept_step": step}
    if best.best_step != step and best.best_loss < (final if final is not None else float("inf")):
        best.restore(model)
        return {"eval_loss": best.best_loss, "final_eval_loss": final, "kept_step": best.best_step}
    return {"eval_loss": final, "final_eval_loss": final, "kept_step": step}


def run_fine_tune(
    cfg: TrainConfig, *, train: str, validation: str, model: str, run_id: str = "",
    required_accelerator: str = "",
) -> dict[str, dict[str, Any]]:
    """Train on the `train` split (validation loss during training) into the folder `model`.

    Refuses, in seconds, to start without the accelerator it was compiled for. Checkpoints are
    keyed by a stable run name (`cfg.run_name`: `submit --run-id`, else the pipeline job, which
    survives worker restarts). Everything later steps need is written into `model` (on Vertex
    this step is a custom job, whose artifact metadata never reaches the pipeline)."""
    from components.common.jsonl import read_rows
    from components.common.step import step_run

    # `train` is the train split's path here (the artifact's name), so the function gets another.
    from components.fine_tune.train import train as train_adapter

    require_accelerator(required_accelerator, "fine-tune")  # seconds, not hours
    bf16_enabled(cfg.bf16)  # bf16=true on a machine without bf16: refused before any data loads
    with step_run("fine-tune", cfg, run_id, output_path=model) as step:
        result = train_adapter(cfg, read_rows(train), read_rows(validation), Path(model),
                               step.tracker, run_name=cfg.run_name or run_id)
        source = model_source(cfg.base_model)
        step.tracker.log_reference("lora-adapter", "model", model, {
            "base_model": source, "eval_loss": result.metrics.get("eval_loss")})
        # The step's own time, in the model folder: the report reads it from there.
        result.metrics.update(step_seconds=step.seconds(), wandb_url=step.tracker.url or "",
                              tracking=step.tracker.report())
        (Path(model) / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
        return {"model": {
            "base_model": source,
            "lora_r": cfg.lora_r,
            "lora_alpha": cfg.lora_alpha,
            "target_modules": cfg.target_modules,
            "wandb_url": step.tracker.url or "",
            **{k: v for k, v in result.metrics.items() if v is not None},
        }}


def main(argv: list[str] | None = None) -> None:
    from components.common.step import main as step_main

    step_main(run_fine_tune, argv)


if __name__ == "__main__":
    main()
