"""Multi-turn conversations train on every assistant turn and nothing else, under the tiny
model's chat template (with `{% generation %}` markers) and under Gemma 3's own template (none:
TRL swaps in its training variant). The labels come from the trainer the fine-tune step builds."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
import trl

from components.common.config import TrainConfig
from components.common.modeling import load_model
from components.fine_tune.train import (
    conversation_loss,
    lora_config,
    sft_config,
    trainer_class,
    training_dataset,
)

# Gemma 3's chat template as google/gemma-3-*-it ship it: TRL keeps this copy to recognise it.
GEMMA3_TEMPLATE = (Path(trl.__file__).parent / "chat_templates" / "gemma3.jinja").read_text()
ANSWERS = ["Paris is the capital.", "About 2.1 million people live there.",
           "The Louvre, the Eiffel Tower and Notre-Dame."]
THREE_TURNS = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": ANSWERS[0]},
    {"role": "user", "content": "How many people live there?"},
    {"role": "assistant", "content": ANSWERS[1]},
    {"role": "user", "content": "Name three sights."},
    {"role": "assistant", "content": ANSWERS[2]},
]


def trained_spans(tokenizer, rows) -> list[str]:
    """The text of each run of positions the loss covers, from the collated batch's labels."""
    cfg = TrainConfig(base_model="embedded://tiny-gemma3", max_seq_len=512,
                      per_device_train_batch_size=2, max_steps=1)
    with tempfile.TemporaryDirectory() as d:
        args = sft_config(cfg, Path(d), False, "none")
        assert conversation_loss(args, rows)
        trainer = trainer_class(False)(
            model=load_model("embedded://tiny-gemma3", device="cpu"), args=args,
            train_dataset=training_dataset(rows, True), processing_class=tokenizer,
            peft_config=lora_config(cfg))
        batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    spans, current = [], []
    for i, label in zip(ids, labels, strict=True):
        if label != -100:
            assert label == i
            current.append(i)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return [tokenizer.decode(s) for s in spans]


@pytest.mark.parametrize("template", ["tiny", "gemma3"])
def test_loss_covers_every_assistant_turn_and_nothing_else(tokenizer, template):
    tok = copy.deepcopy(tokenizer)
    if template == "gemma3":
        tok.chat_template = GEMMA3_TEMPLATE
        assert "{% generation" not in GEMMA3_TEMPLATE and "{%- generation" not in GEMMA3_TEMPLATE
    rows = [{"messages": THREE_TURNS}]
    # Each answer with the end-of-turn marker the model must learn to emit; no header, no user
    # turn, no system prompt.
    assert trained_spans(tok, rows) == [f"{a}<end_of_turn>\n" for a in ANSWERS]


def test_single_turn_rows_keep_the_completion_only_path(tokenizer):
    cfg = TrainConfig(base_model="embedded://tiny-gemma3")
    with tempfile.TemporaryDirectory() as d:
        args = sft_config(cfg, Path(d), False, "none")
        assert not conversation_loss(args, [{"messages": THREE_TURNS[:3]}])
    assert args.completion_only_loss is True and not args.assistant_only_loss
