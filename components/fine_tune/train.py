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

import contextlib
import hashlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.config import TrainConfig
from components.common.errors import InputError
from components.common.memory import peak_memory
from components.common.modeling import (
    best_device,
    bf16_enabled,
    check_target_modules,
    load_model,
    load_tokenizer,
    model_source,
    require_accelerator,
)
from components.common.results import METRICS_FILE, AdapterModel, TrainMetrics, TrainResult
from components.common.tracking import DummyRun, scoped_env
from components.fine_tune import checkpointing

# What the CLI may call: the step's public entry points (tests/unit/test_layout.py).
__all__ = ["check", "run_fine_tune"]


def to_prompt_completion(rows: list[dict[str, Any]]) -> Any:
    """Chat rows -> TRL's conversational prompt/completion format (completion-only loss)."""
    import datasets

    return datasets.Dataset.from_list(
        [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    )


def multi_turn(rows: list[dict[str, Any]]) -> bool:
    return any(sum(m["role"] == "assistant" for m in r["messages"]) > 1 for r in rows)


def conversation_loss(args: Any, rows: list[dict[str, Any]]) -> bool:
    """Multi-turn rows: TRL's assistant-only loss, which masks by the chat template's
    `{% generation %}` blocks (where the model's template has none, TRL's training variant of
    it: trl/chat_templates/gemma3_training.jinja for Gemma 3). True when set."""
    if not multi_turn(rows):
        return False
    args.assistant_only_loss, args.completion_only_loss = True, None
    return True


def training_dataset(rows: list[dict[str, Any]], conversations: bool) -> Any:
    """The rows as TRL reads them: whole conversations (`messages`, trained with TRL's
    assistant-only loss: every assistant turn, nothing else) when any row has several assistant
    turns, else prompt/completion (the loss on the one answer)."""
    import datasets

    if conversations:
        return datasets.Dataset.from_list([{"messages": r["messages"]} for r in rows])
    return to_prompt_completion(rows)


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


# Gemma 3 4B and 12B checkpoints are vision-language models (Gemma3ForConditionalGeneration):
# LoRA goes on the language model only; the SigLIP tower and its projector see no images here.
NOT_LORA = r".*(vision_tower|multi_modal_projector).*"


def lora_config(cfg: TrainConfig, model: Any = None) -> Any:
    from peft import LoraConfig

    multimodal = model is not None and any(
        "vision_tower" in name for name, _ in model.named_modules())
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_module_list,
        exclude_modules=NOT_LORA if multimodal else None,
        task_type="CAUSAL_LM",
    )


def prepare_quantized(model: Any, on_gpu: bool) -> Any:
    """QLoRA: PEFT's k-bit preparation of a 4-bit base (freeze it, cast the layers kept in 16
    bits (norms, embeddings) to fp32 for stable training, enable input gradients and, on GPU,
    gradient checkpointing). TRL's SFTTrainer then puts LoRA on top and keeps the adapter in
    bf16, as the QLoRA paper does."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=on_gpu,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )


def trainer_class(fused_head: bool = True) -> Any:
    """TRL's SFTTrainer with whole-epoch length bucketing; with `fused_head=False`, the model's
    plain full-logits loss instead of TRL's fused LM head.

    Why a choice: TRL's fused head scores the vocabulary in tiles and never holds the logits,
    which is what lets a 262k-vocabulary model train with a useful batch (on CPU as on an L4:
    8 x 1,024 tokens of full logits are 24 GiB). With a small vocabulary (the tiny model) the
    full logits are smaller than the tiles, and the plain loss (identical value, see
    tests/unit/test_batching.py) skips the head's recomputation, about a quarter of a CPU step.
    `memory_plan` decides by that arithmetic, not by the device. On CPU the tiles are narrowed
    (`components.common.memory.CPU_TRAINER_VOCAB_TILE`).
    """
    from transformers import Trainer
    from trl import SFTTrainer

    from components.fine_tune.sampling import bucketed_sampler_for

    class BucketedSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            if self.args.train_sampling_strategy == "group_by_length":
                return bucketed_sampler_for(self, train_dataset)  # see sampling.py for why
            return super()._get_train_sampler(train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            with trl_vocab_tile(self.args.use_cpu):
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)

    if fused_head:
        return BucketedSFTTrainer

    class PlainLossSFTTrainer(BucketedSFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs["use_cache"] = False
            return Trainer.compute_loss(
                self, model, inputs, return_outputs=return_outputs,
                num_items_in_batch=num_items_in_batch,
            )

    return PlainLossSFTTrainer


@contextlib.contextmanager
def trl_vocab_tile(on_cpu: bool) -> Iterator[None]:
    """TRL's fused head, on CPU, in tiles of CPU_TRAINER_VOCAB_TILE vocabulary rows (TRL reads
    the module constant at each forward; tests/unit/test_real_size_memory.py checks it exists)."""
    from trl.trainer import utils as trl_utils

    from components.common.memory import trainer_vocab_tile

    previous = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = trainer_vocab_tile(on_cpu)
    try:
        yield
    finally:
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = previous


def memory_plan(cfg: TrainConfig, model: Any) -> Any:
    """The fused head or the plain loss, and gradient checkpointing or not, by the memory
    arithmetic of a per-device batch of max_seq_len tokens (`components.common.memory`)."""
    from components.common.memory import ModelShape, host_memory_bytes, training_plan

    on_cpu = best_device() == "cpu"
    d = 2 if bf16_enabled(cfg.bf16) else 4
    return training_plan(ModelShape.of(model.config), cfg.per_device_train_batch_size,
                         cfg.max_seq_len, d, on_cpu, host_memory_bytes())


def batching_mode(setting: str) -> str:
    """'packed' on a GPU, 'padded' on CPU, unless set explicitly.

    Why: on CPU there is no variable-length attention kernel, so packing only adds a big
    block-diagonal mask; length-bucketed dynamic padding measured fastest there. On a GPU,
    padding-free packing keeps every token useful and each step's token count fixed.
    """
    if setting != "auto":
        return setting
    return "packed" if best_device() == "cuda" else "padded"


def fsdp_settings(cfg: TrainConfig, world: int) -> dict[str, Any]:
    """FSDP for a base model that does not fit one GPU: each decoder layer is a shard unit,
    parameters sharded across the ranks and gathered layer by layer (`full_shard`). LoRA mixes
    frozen and trainable weights in one layer, hence `use_orig_params`."""
    if cfg.distributed != "fsdp" or world < 2:
        return {}
    return {
        "fsdp": "full_shard auto_wrap",
        "fsdp_config": {
            "transformer_layer_cls_to_wrap": ["Gemma3DecoderLayer"],
            "use_orig_params": True,
            "sync_module_states": True,
            "activation_checkpointing": False,  # the Trainer's own checkpointing does it
        },
    }


def sft_config(cfg: TrainConfig, output_dir: Path, has_eval: bool,
               report_to: str | list[str], world: int = 1,
               checkpointing: bool | None = None) -> Any:
    """Hardware-aware SFTConfig.

    GPU: bf16, gradient checkpointing, padding-free best-fit-decreasing packing (rows never cut,
    never attending to each other: position_ids restart per row and `use_cache=False`), and a
    batch that starts at the configured size and halves on out-of-memory (measured, not guessed).
    CPU: fp32 (bf16 is ~10x slower there), no checkpointing unless `checkpointing` (the memory
    plan) asks for it, length-bucketed dynamic padding
    (sampling.py). Both: response-only loss, through TRL's fused LM head (which never
    materialises the full logits) wherever the full logits would be bigger (`memory_plan`).
    With several processes the batch does not back off on out-of-memory (one rank halving alone
    would stall the others) and DDP does not search for unused parameters (every LoRA weight
    gets a gradient).
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
        auto_find_batch_size=on_gpu and world == 1,
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
        activation_checkpointing=on_gpu if checkpointing is None else checkpointing,
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
        ddp_find_unused_parameters=False if world > 1 else None,
        **fsdp_settings(cfg, world),
    )


@dataclass
class Built:
    """A trainer ready to fit, and what fitting and writing the outputs need from its making."""

    trainer: Any
    model: Any  # the PEFT model the trainer trains
    tokenizer: Any
    args: Any  # the SFTConfig
    ckpt: checkpointing.Session | None
    best: Any  # BestAdapterCallback, None without validation rows
    work: Path
    fused_head: bool
    digest_before: str | None


@dataclass
class Fitted:
    result: Any  # transformers' TrainOutput
    seconds: float
    kept: dict[str, Any]  # keep_best's eval_loss, final_eval_loss, kept_step


def build_trainer(
    cfg: TrainConfig, train_rows: list[dict[str, Any]], val_rows: list[dict[str, Any]],
    tracker: DummyRun, run_name: str, work_dir: str,
) -> Built:
    """Model, tokenizer, LoRA and the SFTTrainer with its callbacks (best adapter, throughput,
    checkpoints). Everything a user can get wrong fails here, before any step runs."""
    import torch

    from components.fine_tune import distributed
    from components.fine_tune.callbacks import (
        BestAdapterCallback,
        ProgressCallback,
        ThroughputCallback,
        install_first,
    )

    world = distributed.world_size()
    if not train_rows:
        raise InputError("the train split is empty; check the prepare step's filters")
    check_target_modules(cfg.base_model, cfg.target_module_list)
    # Bad bucket/permissions fail here, early (once, in the launching process, for several).
    store = checkpointing.open_store(cfg, run_name, check=not distributed.in_worker())
    # Denormal floats make CPU training slow down several-fold late in a run; flush them to 0.
    torch.set_flush_denormal(True)
    torch.manual_seed(cfg.seed)

    tokenizer = load_tokenizer(cfg.base_model, padding_side="right")
    on_gpu = best_device() == "cuda"
    model = load_model(cfg.base_model, bf16=bf16_enabled(cfg.bf16),
                       device=distributed.device_for_rank() if world > 1 else None,
                       quantization=cfg.quantization)
    model.config.use_cache = False  # packed/padded batches stay isolated; no KV cache in training
    if cfg.quantization != "none":
        model = prepare_quantized(model, on_gpu)

    plan = memory_plan(cfg, model)
    # Trainer scratch space stays out of the Model artifact (only the adapter is published).
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="fine-tune-"))
    args = sft_config(cfg, work, has_eval=bool(val_rows), report_to=tracker.report_to,
                      world=world, checkpointing=plan.checkpointing)
    ckpt = checkpointing.Session(store, cfg, train_rows, work, world) if store else None
    if ckpt:
        args = ckpt.training_args(args)
    conversations = conversation_loss(args, train_rows + val_rows)
    # HF's own report_to integrations (W&B, TensorBoard, MLflow) log the training curves into
    # the runs the tracker opened; TensorBoardCallback reads its folder from the environment.
    with scoped_env(tracker.hf_env()):
        trainer = trainer_class(plan.fused_head)(
            model=model,
            args=args,
            train_dataset=training_dataset(train_rows, conversations),
            eval_dataset=training_dataset(val_rows, conversations) if val_rows else None,
            processing_class=tokenizer,
            peft_config=lora_config(cfg, model),
            callbacks=[ckpt.callback] if ckpt else None,
        )
    best = BestAdapterCallback() if val_rows else None  # keeps the lowest-validation-loss adapter
    if best:
        install_first(trainer, best)  # before the checkpoint upload: its file rides along
    install_first(trainer, ThroughputCallback())  # tokens/s (+ GPU memory) on each log line
    trainer.add_callback(ProgressCallback())  # a progress line every 30 s (progress.EVERY_S)
    return Built(trainer=trainer, model=trainer.model, tokenizer=tokenizer, args=args, ckpt=ckpt,
                 best=best, work=work, fused_head=plan.fused_head,
                 digest_before=base_weights_digest(trainer.model))


def fit(built: Built) -> Fitted:
    """Train (resuming from the newest checkpoint if there is one), then put back the adapter
    with the lowest validation loss."""
    from components.fine_tune.callbacks import BEST_FILE

    start = time.perf_counter()
    with checkpointing.during_training(built.ckpt) as resume_from:
        if resume_from and built.best:
            built.best.load(Path(resume_from) / BEST_FILE)
        result = built.trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    kept = keep_best(built.trainer, built.best, built.model) if built.best else {}
    return Fitted(result=result, seconds=seconds, kept=kept)


def training_metrics(cfg: TrainConfig, built: Built, fitted: Fitted,
                     train_rows: int) -> TrainMetrics:
    """The numbers of this training: losses, the adapter kept, throughput, sizes, where it ran."""
    from components.fine_tune import distributed

    state, args = built.trainer.state, built.args
    history = [h for h in state.log_history if "loss" in h]
    kept, seconds = fitted.kept, fitted.seconds
    tokens = int(state.num_input_tokens_seen or 0)
    world = distributed.world_size()
    eval_loss = kept.get("eval_loss")
    return TrainMetrics(**{
        "train_loss": fitted.result.training_loss,
        "first_logged_loss": history[0]["loss"] if history else None,
        "last_logged_loss": history[-1]["loss"] if history else None,
        "eval_loss": eval_loss,
        "eval_perplexity": math.exp(eval_loss) if eval_loss is not None else None,
        "final_eval_loss": kept.get("final_eval_loss"),
        "kept_step": kept.get("kept_step", state.global_step),
        "epochs": round(float(state.epoch or 0.0), 3),
        "train_rows": train_rows,
        "global_step": state.global_step,
        "train_seconds": round(seconds, 2),
        "train_tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "trainable_params": sum(p.numel() for p in built.model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in built.model.parameters()),
        "base_weights_digest_before": built.digest_before,
        "base_weights_digest_after": base_weights_digest(built.model),
        "base_model": model_source(cfg.base_model),
        "device": best_device(),
        "bf16": args.bf16,
        "quantization": cfg.quantization,
        "world_size": world,
        "distributed": cfg.distributed if world > 1 else "none",
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps
        * world,
        "loss_head": "fused" if built.fused_head else "full_logits",
        "activation_checkpointing": args.activation_checkpointing,
        **(built.ckpt.summary(seconds) if built.ckpt else {}),
        **peak_memory(),
    })


def save_adapter(built: Built, output_dir: Path) -> None:
    """Rank 0: the adapter (gathered from the shards under FSDP) and the tokenizer."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if not built.args.fsdp:
        built.model.save_pretrained(output_dir)
    built.tokenizer.save_pretrained(output_dir)


def write_outputs(
    cfg: TrainConfig, built: Built, metrics: TrainMetrics, output_dir: Path, tracker: DummyRun,
    run_name: str, started: float | None,
) -> None:
    """Rank 0: training config, metrics (once, with the step's own time: on Vertex this step is
    a custom job whose metadata never reaches the pipeline) and the loss history beside the
    adapter, then a copy of the folder next to the checkpoints."""
    source = model_source(cfg.base_model)
    (output_dir / "training_config.json").write_text(json.dumps({
        **cfg.model_dump(), "base_model": source, "run_name": run_name,
        **({"base_model_path": cfg.base_model} if source != cfg.base_model else {}),
    }, indent=2))
    (output_dir / "log_history.json").write_text(
        json.dumps(built.trainer.state.log_history, indent=2))
    tracker.summary({k: v for k, v in metrics.to_dict().items() if isinstance(v, int | float)})
    tracker.log_reference("lora-adapter", "model", str(output_dir), {
        "base_model": source, "eval_loss": metrics.eval_loss})
    metrics.wandb_url, metrics.tracking = tracker.url or "", tracker.report()
    if started is not None:
        metrics.step_seconds = round(time.time() - started, 2)
    metrics.write(output_dir / METRICS_FILE)
    if built.ckpt:
        built.ckpt.publish(output_dir)


def train(
    cfg: TrainConfig,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
    output_dir: Path,
    tracker: DummyRun | None = None,
    run_name: str = "",
    work_dir: str = "",
    started: float | None = None,
) -> TrainResult:
    """Train a LoRA adapter and save adapter + tokenizer + config + metrics to `output_dir`:
    build the trainer, fit, write the outputs (as TRL's `sft.py` main loads, trains, saves).

    With `cfg.checkpoint_uri`, checkpoints stream to `<uri>/<run_name>/fine-tune/` and a rerun
    with the same run name resumes from the newest complete one (`checkpointing.py`).
    Run by every process of a data-parallel job (`distributed.py`), it trains on this rank's
    slice of each batch; only rank 0 writes outputs, the others return empty metrics. `work_dir`
    is the scratch folder all ranks share (checkpoints are written there before upload);
    `started` (time.time() when the step began) gives metrics.json the step's seconds."""
    from components.fine_tune import distributed

    tracker = tracker or DummyRun()
    built = build_trainer(cfg, train_rows, val_rows, tracker, run_name, work_dir)
    fitted = fit(built)
    if built.args.fsdp:  # the full adapter is gathered from the shards (a collective), rank 0 writes
        built.trainer.save_model(str(output_dir))
    if not distributed.is_main():
        return TrainResult(metrics=TrainMetrics(), output_dir=output_dir)
    save_adapter(built, output_dir)
    # After saving: bitsandbytes' CPU 4-bit weights change layout while training and are put
    # back by save_pretrained, so only then does the digest compare like with like.
    metrics = training_metrics(cfg, built, fitted, len(train_rows))
    write_outputs(cfg, built, metrics, output_dir, tracker, run_name, started)
    if not work_dir:  # a shared one belongs to the launching process
        shutil.rmtree(built.work, ignore_errors=True)  # local checkpoints: durable copies in GCS
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


def check(cfg: TrainConfig) -> None:
    """The step's checks that need neither the data nor the model, writing nothing: the base
    model's embedded:// name, bf16 on this machine (the local runner trains here), and the
    checkpoint bucket's access (a missing bucket fails before any step runs)."""
    from components.common.paths import resolve_embedded

    resolve_embedded(cfg.base_model)
    if cfg.bf16 == "true":
        bf16_enabled(cfg.bf16)
    if cfg.checkpoint_uri:
        checkpointing.CheckpointStore(
            checkpointing.task_prefix(cfg.checkpoint_uri, cfg.run_name)).check_access()


def run_fine_tune(
    cfg: TrainConfig, *, train: str, validation: str, model: str, run_id: str = "",
    required_accelerator: str = "", trial: str = "",
) -> dict[str, AdapterModel]:
    """Train on the `train` split (validation loss during training) into the folder `model`.

    Refuses, in seconds, to start without the accelerator it was compiled for. Checkpoints are
    keyed by a stable run name (`cfg.run_name`: `submit --run-id`, else the pipeline job, which
    survives worker restarts). Everything later steps need is written into `model` (on Vertex
    this step is a custom job, whose artifact metadata never reaches the pipeline).

    With several GPUs (or `num_processes` > 1) it starts one training process per GPU with
    torchrun's launcher (`distributed.py`) and returns what rank 0 returned; everything a user
    can get wrong is checked here first, before any process starts.

    `trial` (a sweep's JSON of settings) overrides the config for this trial and adds its
    validation scores to the model folder (`trial.py`)."""
    from components.fine_tune import distributed, permanent
    from components.fine_tune.trial import apply_trial, trial_settings

    settings = trial_settings(trial)
    cfg = apply_trial(cfg, settings, run_id)

    # A permanent error of an earlier attempt of this job: refused at once (permanent.py).
    prefix = (checkpointing.task_prefix(cfg.checkpoint_uri, cfg.run_name or run_id)
              if cfg.checkpoint_uri and run_id and not distributed.in_worker() else "")
    if prefix:
        permanent.refuse_if_recorded(prefix, run_id)
    try:
        result = _fine_tune(cfg, train, validation, model, run_id, required_accelerator,
                            settings)
    except BaseException as exc:
        if prefix and permanent.is_permanent(exc):
            permanent.record(prefix, run_id, exc)
        raise
    if settings and result:
        from components.common.jsonl import read_rows
        from components.fine_tune.trial import write_validation_scores

        write_validation_scores(cfg, model, read_rows(validation), settings,
                                batch_size=cfg.per_device_train_batch_size)
    return result


def _fine_tune(cfg: TrainConfig, train: str, validation: str, model: str, run_id: str,
               required_accelerator: str, settings: dict[str, Any] | None = None,
               ) -> dict[str, AdapterModel]:
    from components.fine_tune import distributed
    from components.fine_tune.trial import trial_label

    # Each trial its own tracker run (W&B run, TensorBoard folder, Vertex Experiments run).
    step = f"fine-tune-{trial_label(settings)}" if settings else "fine-tune"
    started = time.time()
    require_accelerator(required_accelerator, "fine-tune")  # seconds, not hours
    bf16_enabled(cfg.bf16)  # bf16=true on a machine without bf16: refused before any data loads
    world = distributed.world_size_for(cfg)
    if world == 1 or distributed.in_worker():
        return fine_tune_process(cfg, train, validation, model, run_id, "", started, step)
    gpus = distributed.visible_gpus()
    if gpus and world > gpus:
        raise InputError(f"num_processes={world} but this machine has {gpus} GPU(s); use at "
                         f"most {gpus} (or 0: one per GPU)")
    check_target_modules(cfg.base_model, cfg.target_module_list)
    checkpointing.open_store(cfg, cfg.run_name or run_id)  # access, checked once
    work = tempfile.mkdtemp(prefix="fine-tune-")  # shared by the ranks: checkpoints land here
    try:
        return distributed.launch(world, fine_tune_process, cfg, train, validation, model,
                                  run_id, work, started, step)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fine_tune_process(
    cfg: TrainConfig, train_path: str, val_path: str, model_dir: str, run_id: str,
    work_dir: str, started: float, step: str = "fine-tune",
) -> dict[str, AdapterModel]:
    """One training process: rank 0 (or the only process) tracks and publishes; other ranks
    train their share and return {}."""
    from components.common.jsonl import read_rows
    from components.common.step import step_run
    from components.fine_tune import distributed

    run_name = cfg.run_name or run_id
    if not distributed.is_main():
        train(cfg, read_rows(train_path), read_rows(val_path), Path(model_dir), DummyRun(),
              run_name=run_name, work_dir=work_dir)
        return {}
    with step_run(step, cfg, run_id, output_path=model_dir) as ctx:
        result = train(cfg, read_rows(train_path), read_rows(val_path), Path(model_dir),
                       ctx.tracker, run_name=run_name, work_dir=work_dir, started=started)
        return {"model": AdapterModel(
            **result.metrics.to_dict(), lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
            target_modules=cfg.target_modules)}


def main(argv: list[str] | None = None) -> None:
    from components.common.step import main as step_main

    step_main(run_fine_tune, argv)


if __name__ == "__main__":
    main()
