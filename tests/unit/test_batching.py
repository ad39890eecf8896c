"""Batching modes agree: packed (padding-free) == padded per-sequence loss, same response-only
masking in every mode, and TRL's fused (chunked) LM-head loss == the plain full-logits loss."""

from __future__ import annotations

import pytest
import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
from trl.trainer.utils import add_fused_lm_head

from components.common.generation import prompt_text
from components.common.modeling import load_model

CONVS = [
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
    [{"role": "user", "content": "What is the capital of France? Answer in a full sentence."},
     {"role": "assistant", "content": "The capital of France is Paris, on the Seine."}],
    [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there, friend."}],
]


def features(tokenizer) -> list[dict]:
    out = []
    for msgs in CONVS:
        prompt = tokenizer(prompt_text(tokenizer, msgs), add_special_tokens=False)["input_ids"]
        ids = tokenizer(tokenizer.apply_chat_template(msgs, tokenize=False),
                        add_special_tokens=False)["input_ids"]
        out.append({"input_ids": ids, "labels": [-100] * len(prompt) + ids[len(prompt):]})
    return out


@pytest.fixture(scope="module")
def model(tiny_model_ref):
    m = load_model(tiny_model_ref, device="cpu").eval()
    m.config.use_cache = False
    return m


def per_token_nll(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        logits = model(**inputs, use_cache=False).logits.float()
    labels = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return nll, labels


def split_sums(nll, labels, lengths) -> list[float]:
    """Per-sequence NLL sums from a (1, total) packed row."""
    sums, start = [], 0
    flat_nll, flat_lab = nll[0], labels[0]
    for n in lengths:
        seg = slice(start, start + n - 1)  # the last position of a sequence predicts the next one
        sums.append(float(flat_nll[seg][flat_lab[seg] != -100].sum()))
        start += n
    return sums


def test_packed_equals_padded_per_sequence_loss(model, tokenizer):
    feats = features(tokenizer)
    padded = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(feats)
    packed = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id,
                                             padding_free=True)(feats)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    nll_pad, lab_pad = per_token_nll(model, padded)
    padded_sums = [float(nll_pad[i][lab_pad[i] != -100].sum()) for i in range(len(feats))]
    nll_pack, lab_pack = per_token_nll(model, packed)
    packed_sums = split_sums(nll_pack, lab_pack, [len(f["input_ids"]) for f in feats])
    assert packed_sums == pytest.approx(padded_sums, rel=1e-4)


def test_packed_sequences_do_not_attend_to_each_other(model, tokenizer):
    """Changing the first sequence must not change the loss of the second one when packed."""
    feats = features(tokenizer)
    other = [dict(feats[0], input_ids=[t + 1 for t in feats[0]["input_ids"]])] + feats[1:]
    coll = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
    lengths = [len(f["input_ids"]) for f in feats]
    a = split_sums(*per_token_nll(model, coll(feats)), lengths)
    b = split_sums(*per_token_nll(model, coll(other)), lengths)
    assert a[1:] == pytest.approx(b[1:], rel=1e-5)
    assert a[0] != pytest.approx(b[0], rel=1e-3)


def test_response_only_mask_is_identical_across_modes(tokenizer):
    feats = features(tokenizer)
    padded = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(feats)
    packed = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id,
                                             padding_free=True)(feats)
    start = 0
    for i, f in enumerate(feats):
        n = len(f["input_ids"])
        expected = torch.tensor(f["labels"])
        assert torch.equal(padded["labels"][i][:n], expected)
        assert (padded["labels"][i][n:] == -100).all()
        # padding-free additionally masks each sequence's first token (position 0), always a prompt token
        assert torch.equal(packed["labels"][0][start:start + n], expected)
        start += n


def test_fused_chunked_loss_equals_plain_loss(tiny_model_ref, tokenizer):
    feats = features(tokenizer)
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(feats)
    plain = load_model(tiny_model_ref, device="cpu").eval()
    fused = load_model(tiny_model_ref, device="cpu").eval()
    add_fused_lm_head(fused)
    with torch.no_grad():
        ref = plain(**batch, use_cache=False).loss
        out = fused(**batch, fused_lm_head=True)
    assert out.loss is not None
    assert float(out.loss) == pytest.approx(float(ref), rel=1e-5)
    assert not hasattr(out, "logits") or out.logits is None
