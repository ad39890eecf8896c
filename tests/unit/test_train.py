"""Training means something: loss goes down, LoRA weights change, base weights do not."""

from __future__ import annotations

import json
import re

import pytest
from peft import PeftModel
from safetensors.torch import load_file

from components.common.config import DataConfig, TrainConfig
from components.common.errors import InputError
from components.common.generation import response_losses
from components.common.modeling import load_model
from components.evaluate.metrics import token_weighted_loss
from components.fine_tune.train import train
from components.prepare_data.prepare import prepare

MODEL = "embedded://tiny-gemma3"


@pytest.fixture(scope="module")
def splits(tokenizer):
    cfg = DataConfig(dataset="embedded://dolly-15k-sample.jsonl",
                     base_model="embedded://tiny-gemma3", max_seq_len=256)
    return prepare(cfg, tokenizer).splits


def test_lora_training_learns_and_leaves_base_untouched(tmp_path, splits, tokenizer, capsys):
    cfg = TrainConfig(base_model="embedded://tiny-gemma3", max_seq_len=256, max_steps=12,
                      learning_rate=3e-3, per_device_train_batch_size=8,
                      gradient_accumulation_steps=1, logging_steps=1, eval_steps=6,
                      warmup_ratio=0.0)
    result = train(cfg, splits["train"][:96], splits["validation"][:8], tmp_path / "adapter")
    m = result.metrics
    assert m.global_step == 12
    # It said how it went: the first step's progress line and the last one (30 s apart at most).
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("progress ")]
    # step 1's loss is logged just after its line: the first line has none yet
    assert re.fullmatch(r"progress fine-tune step 1/12 [\d,]+ tok/s eta \S+", lines[0])
    assert re.fullmatch(r"progress fine-tune step 12/12 loss [\d.]+ [\d,]+ tok/s eta 0s", lines[-1])
    # Held-out loss, not first vs last step: length-bucketed batches differ in length from step
    # to step, and a batch's per-token loss depends on its length as much as on training.
    val = [r["messages"] for r in splits["validation"]]
    base_loss = token_weighted_loss(response_losses(load_model(MODEL, device="cpu"), tokenizer, val))
    tuned = PeftModel.from_pretrained(load_model(MODEL, device="cpu"), tmp_path / "adapter")
    assert token_weighted_loss(response_losses(tuned, tokenizer, val)) < base_loss - 0.05
    assert m.base_weights_digest_before == m.base_weights_digest_after
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    lora_b = [w for k, w in weights.items() if "lora_B" in k]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b), "lora_B starts at 0 and must move"
    assert not any("lora" not in k for k in weights), "only adapter weights are saved"
    saved = json.loads((tmp_path / "adapter" / "training_config.json").read_text())
    assert saved["lora_r"] == 16
    assert (tmp_path / "adapter" / "tokenizer_config.json").exists()


def test_target_modules_missing_fail_before_training(tmp_path, splits):
    cfg = TrainConfig(base_model="embedded://tiny-gemma3", target_modules="c_attn")
    with pytest.raises(InputError, match="c_attn not found"):
        train(cfg, splits["train"][:4], [], tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()


def test_packed_mode_trains_through_the_same_path(tmp_path, splits):
    """The GPU batching mode (padding-free packing) runs end to end on CPU too."""
    cfg = TrainConfig(base_model="embedded://tiny-gemma3", max_seq_len=256, max_steps=12,
                      learning_rate=5e-3, per_device_train_batch_size=2,
                      gradient_accumulation_steps=1, logging_steps=1, batching="packed",
                      warmup_ratio=0.0)
    m = train(cfg, splits["train"][:96], [], tmp_path / "adapter").metrics
    assert m.global_step == 12
    history = json.loads((tmp_path / "adapter" / "log_history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    # two packed rows of <= 256 tokens per step: far more real tokens than two average rows
    assert m.train_tokens > 12 * 2 * 150


def test_a_machine_short_of_memory_trains_with_checkpointing_on_cpu(tmp_path, splits,
                                                                     monkeypatch):
    """The memory plan turns gradient checkpointing on when a step's activations would take
    more than half of the machine (here: one of 1 MiB). It changes memory, not the arithmetic:
    every step's loss and gradient norm match a run without it."""
    from components.common import memory

    cfg = TrainConfig(base_model=MODEL, max_seq_len=256, max_steps=4, learning_rate=5e-3,
                      per_device_train_batch_size=4, gradient_accumulation_steps=1,
                      logging_steps=1, warmup_ratio=0.0)

    def run(name: str) -> tuple[dict, list]:
        m = train(cfg, splits["train"][:16], [], tmp_path / name).metrics
        log = json.loads((tmp_path / name / "log_history.json").read_text())
        return m, [v for h in log if "loss" in h for v in (h["loss"], h["grad_norm"])]

    plain, plain_log = run("plain")
    monkeypatch.setattr(memory, "host_memory_bytes", lambda: 2**20)
    small, small_log = run("small")
    assert plain.activation_checkpointing is False
    assert small.activation_checkpointing is True and small.loss_head == "full_logits"
    assert len(small_log) == 2 * 4
    assert small_log == pytest.approx(plain_log, rel=1e-4)


def _corrupting_trainer(monkeypatch, at_step: int) -> None:
    """Make the adapter worse after step `at_step` (lora_B x 40): validation loss then rises
    while training goes on, deterministically, as when a small train set is overfitted."""
    import torch
    from transformers import TrainerCallback

    from components.fine_tune import train as train_mod

    base = train_mod.trainer_class(fused_head=False)  # what the tiny model gets

    class Corrupt(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step == at_step:
                with torch.no_grad():
                    for name, p in model.named_parameters():
                        if "lora_B" in name:
                            p.mul_(40.0)

    class Corrupting(base):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.add_callback(Corrupt())

    monkeypatch.setattr(train_mod, "trainer_class", lambda fused_head: Corrupting)


BEST_CFG = dict(base_model=MODEL, max_seq_len=256, max_steps=6, learning_rate=3e-3,
                per_device_train_batch_size=8, gradient_accumulation_steps=1, logging_steps=1,
                eval_steps=2, warmup_ratio=0.0, lora_dropout=0.0, save_steps=2,
                save_total_limit=5, save_minutes=0)


def _val_loss(adapter, rows, tokenizer) -> float:
    tuned = PeftModel.from_pretrained(load_model(MODEL, device="cpu"), adapter)
    return token_weighted_loss(response_losses(tuned, tokenizer, [r["messages"] for r in rows]))


def test_the_adapter_with_the_best_validation_loss_is_kept(tmp_path, splits, tokenizer,
                                                           monkeypatch, gcs):
    """Validation loss rises after step 4: the saved adapter is step 4's, metrics say so, and a
    rerun that resumes from the last checkpoint still keeps step 4's (it rides along in every
    checkpoint)."""
    _corrupting_trainer(monkeypatch, at_step=5)
    val = splits["validation"][:6]  # one evaluation batch: eval_loss is token-weighted
    cfg = TrainConfig(**BEST_CFG, checkpoint_uri="gs://ckpt/best")
    m = train(cfg, splits["train"][:32], val, tmp_path / "a", run_name="best").metrics
    history = json.loads((tmp_path / "a" / "log_history.json").read_text())
    assert [h["step"] for h in history if "eval_loss" in h] == [2, 4, 6]  # step 6 once
    evals = {h["step"]: h["eval_loss"] for h in history if "eval_loss" in h}
    assert evals[6] > evals[4]
    best_step = min(evals, key=evals.get)
    assert m.kept_step == best_step == 4 and m.global_step == 6
    assert m.eval_loss == pytest.approx(evals[4]) and m.final_eval_loss == evals[6]
    assert m.epochs == pytest.approx(1.5) and m.train_rows == 32
    assert _val_loss(tmp_path / "a", val, tokenizer) == pytest.approx(evals[4], rel=1e-3)
    # The same run again resumes from the step-6 checkpoint: the best weights come from it.
    again = train(cfg, splits["train"][:32], val, tmp_path / "b", run_name="best").metrics
    assert again.resumed_from_step == 6 and again.kept_step == 4
    assert _val_loss(tmp_path / "b", val, tokenizer) == pytest.approx(evals[4], rel=1e-3)
