"""Fine-tune step: LoRA (PEFT) supervised fine-tuning with TRL, loss on the response tokens only.

Shaped like TRL's `trl/scripts/sft.py`: `main(config)` does the work, `make_parser()` builds the
CLI. The KFP component calls `run_fine_tune`, which adds the artifact bookkeeping.

    uv run python -m components.fine_tune.train --train /tmp/prep/train.jsonl \
        --validation /tmp/prep/validation.jsonl --base-model embedded://tiny-gemma3 \
        --max-steps 30 --learning-rate 2e-3 --out /tmp/adapter
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.config import TrainConfig, build
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


def sft_config(cfg: TrainConfig, output_dir: Path, has_eval: bool,
               report_to: str | list[str]) -> Any:
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

    from components.fine_tune.callbacks import ThroughputCallback, install_first

    tracker = tracker or DummyRun()
    if not train_rows:
        raise InputError("the train split is empty; check the prepare step's filters")
    check_target_modules(cfg.base_model, cfg.target_module_list)
    store = checkpointing.open_store(cfg, run_name)  # bad bucket/permissions fail here, early
    torch.set_flush_denormal(True)  # avoids a late-training slowdown on CPU (FIELD-NOTES)
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
    install_first(trainer, ThroughputCallback())  # tokens/s (+ GPU memory) on each log line
    peft_model = trainer.model
    digest_before = base_weights_digest(peft_model)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())

    start = time.perf_counter()
    with checkpointing.during_training(ckpt) as resume_from:
        result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    history = [h for h in trainer.state.log_history if "loss" in h]
    eval_metrics = trainer.evaluate() if val_rows else {}

    output_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    source = model_source(cfg.base_model)
    metrics = {
        "train_loss": result.training_loss,
        "first_logged_loss": history[0]["loss"] if history else None,
        "last_logged_loss": history[-1]["loss"] if history else None,
        "eval_loss": eval_metrics.get("eval_loss"),
        "eval_perplexity": math.exp(eval_metrics["eval_loss"]) if "eval_loss" in eval_metrics else None,
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


def run_fine_tune(
    params: dict[str, Any],
    train_path: str,
    val_path: str,
    model_dir: str,
    run_id: str = "",
    wandb_project: str = "",
) -> dict[str, Any]:
    """Entry point of the KFP component. Returns the Model artifact's metadata."""
    from components.common.tracking import tracking_run
    from components.prepare_data.prepare import read_rows

    t0 = time.perf_counter()
    cfg: TrainConfig = build(TrainConfig, params)
    require_accelerator(params.get("required_accelerator", ""), "fine-tune")  # seconds, not hours
    # Checkpoints are keyed by a stable run name (`submit --run-id`, or the Vertex job name, which
    # survives worker restarts); W&B groups by the pipeline job, like every other step.
    run_name = params.get("run_name") or run_id
    with tracking_run("fine-tune", cfg.model_dump(), params.get("wandb_project", wandb_project),
                      group=run_id, settings=cfg, output_path=model_dir) as tracker:
        result = train(cfg, read_rows(train_path), read_rows(val_path), Path(model_dir), tracker,
                       run_name=run_name)
        source = model_source(cfg.base_model)
        tracker.log_reference("lora-adapter", "model", model_dir, {
            "base_model": source, "eval_loss": result.metrics.get("eval_loss")})
        # The step's own time, in the model folder: the report reads it from there, since on
        # Vertex this step is a custom job whose artifact metadata never reaches the pipeline.
        result.metrics.update(step_seconds=round(time.perf_counter() - t0, 2),
                              wandb_url=tracker.url or "", tracking=tracker.report())
        (Path(model_dir) / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
        return {
            "base_model": source,
            "lora_r": cfg.lora_r,
            "lora_alpha": cfg.lora_alpha,
            "target_modules": cfg.target_modules,
            "wandb_url": tracker.url or "",
            **{k: v for k, v in result.metrics.items() if v is not None},
        }


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="LoRA fine-tune on prepared chat JSONL.")
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--run-name", default="", help="Names the checkpoint folder (resume key).")
    for name, f in TrainConfig.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"), type=type(f.default), default=f.default,
            help=f.description,
        )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = vars(make_parser().parse_args(argv))
    meta = run_fine_tune(args, args.pop("train"), args.pop("validation"), args.pop("out"))
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
