"""Scoring masks the prompt; batched greedy generation matches one-at-a-time."""

import pytest
import torch

from components.common.generation import generate, prompt_text, response_losses
from components.common.modeling import load_model

CONVS = [
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
    [{"role": "user", "content": "What is the capital of France? Answer in a full sentence."},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there, friend."}],
]


@pytest.fixture(scope="module")
def model(tiny_model_ref):
    return load_model(tiny_model_ref, device="cpu").eval()


def test_loss_counts_only_response_tokens(model, tokenizer):
    (s, n), = response_losses(model, tokenizer, CONVS[:1])
    full = tokenizer(tokenizer.apply_chat_template(CONVS[0], tokenize=False),
                     add_special_tokens=False)["input_ids"]
    prompt = tokenizer(prompt_text(tokenizer, CONVS[0]), add_special_tokens=False)["input_ids"]
    assert n == len(full) - len(prompt)
    ids = torch.tensor([full])
    labels = torch.tensor([[-100] * len(prompt) + full[len(prompt):]])
    with torch.no_grad():
        ref = model(input_ids=ids, labels=labels).loss.item()
    assert s / n == pytest.approx(ref, rel=1e-4)


def test_padding_does_not_change_per_row_loss(model, tokenizer):
    alone = [response_losses(model, tokenizer, [c])[0] for c in CONVS]
    batched = response_losses(model, tokenizer, CONVS, batch_size=3)
    for (a, na), (b, nb) in zip(alone, batched, strict=True):
        assert na == nb
        assert a == pytest.approx(b, rel=1e-4)


def test_batched_greedy_equals_sequential(model, tokenizer):
    prompts = [prompt_text(tokenizer, c) for c in CONVS]
    batched = generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=3)
    single = [generate(model, tokenizer, [p], max_new_tokens=12)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.completion_tokens <= 12 for g in batched)
