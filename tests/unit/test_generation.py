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


def full_logits_losses(model, tokenizer, convs):
    """The reference: every conversation alone, the model's whole logits, plain cross-entropy
    (what scoring did before the LM head was tiled)."""
    out = []
    for msgs in convs:
        full = tokenizer(tokenizer.apply_chat_template(msgs, tokenize=False),
                         add_special_tokens=False)["input_ids"]
        prompt = tokenizer(prompt_text(tokenizer, msgs), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([full])).logits.float()[0, :-1]
        labels = torch.tensor(full[1:])
        nll = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        out.append((float(nll[len(prompt) - 1:].sum()), len(full) - len(prompt)))
    return out


def _assert_same(got, want):
    for (a, na), (b, nb) in zip(got, want, strict=True):
        assert na == nb
        assert a == pytest.approx(b, rel=1e-5, abs=1e-4)


def test_tiled_head_losses_equal_full_logits(model, tokenizer):
    _assert_same(response_losses(model, tokenizer, CONVS, batch_size=2),
                 full_logits_losses(model, tokenizer, CONVS))


def test_tiled_head_losses_with_the_adapter_on_and_off(model, tokenizer):
    """Through PEFT: the backbone call must go through the LoRA layers, and not when disabled."""
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft = get_peft_model(copy.deepcopy(model), LoraConfig(
        r=4, target_modules="all-linear", init_lora_weights=False)).eval()
    tuned = response_losses(peft, tokenizer, CONVS, batch_size=3)
    _assert_same(tuned, full_logits_losses(peft, tokenizer, CONVS))
    with peft.disable_adapter():
        _assert_same(response_losses(peft, tokenizer, CONVS, batch_size=3),
                     full_logits_losses(model, tokenizer, CONVS))
    assert [s for s, _ in tuned] != pytest.approx(
        [s for s, _ in full_logits_losses(model, tokenizer, CONVS)], rel=1e-3)


def test_tiled_head_applies_final_logit_softcapping(model, tokenizer):
    """A model that soft-caps its logits (Gemma 2 does, at 30) scores the capped logits."""
    from transformers import AutoModelForCausalLM

    config = copy_config(model.config, final_logit_softcapping=2.0)
    torch.manual_seed(0)
    capped = AutoModelForCausalLM.from_config(config).eval()
    capped.load_state_dict(model.state_dict())
    want = full_logits_losses(capped, tokenizer, CONVS)
    assert want != full_logits_losses(model, tokenizer, CONVS)
    _assert_same(response_losses(capped, tokenizer, CONVS, batch_size=3), want)


def copy_config(config, **changes):
    import copy

    config = copy.deepcopy(config)
    for k, v in changes.items():
        setattr(config, k, v)
    return config


def test_batched_greedy_equals_sequential(model, tokenizer):
    prompts = [prompt_text(tokenizer, c) for c in CONVS]
    batched = generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=3)
    single = [generate(model, tokenizer, [p], max_new_tokens=12)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.completion_tokens <= 12 for g in batched)


class _FakeModel:
    """Stands in for a causal LM's generate(): emits fixed token rows, step by step, calling the
    stopping criteria after each step as transformers does."""

    def __init__(self, rows: list[list[int]], eos: list[int]) -> None:
        import types

        self.rows = rows
        self.generation_config = types.SimpleNamespace(eos_token_id=eos)
        self.seen: dict = {}

    def parameters(self):
        yield torch.zeros(1)

    def generate(self, input_ids, attention_mask, **kw):
        self.seen = kw
        out = input_ids
        for step in range(len(self.rows[0])):
            new = torch.tensor([[r[step]] for r in self.rows])
            out = torch.cat([out, new], dim=1)
            for crit in kw["stopping_criteria"]:
                crit(out, None)
        return out


def test_generation_stops_at_the_chat_templates_end_of_turn(tokenizer, monkeypatch):
    """A model whose generation_config lacks <end_of_turn> must still stop there, instead of
    inventing the user's next turn."""
    from components.common import generation

    eot = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert generation.end_of_turn_ids(tokenizer) == [eot]
    words = tokenizer("blue sky next turn", add_special_tokens=False)["input_ids"]
    model = _FakeModel([[words[0], words[1], eot, words[2], words[3]]],
                       eos=[tokenizer.eos_token_id])
    [g] = generate(model, tokenizer, [prompt_text(tokenizer, CONVS[0])], max_new_tokens=5)
    assert g.completion_tokens == 3 and "next" not in g.text and "turn" not in g.text
    assert eot in model.seen["eos_token_id"]  # generate itself stops there too


def test_each_row_has_its_own_latency(tokenizer, monkeypatch):
    """Rows of one batch that finish early are timed when they finish, so p50 != p95; the
    clock is a counter (one tick per reading), not the wall."""
    from components.common import generation
    from components.inference.infer import timing_summary

    ticks = iter(range(1000))
    monkeypatch.setattr(generation.time, "perf_counter", lambda: float(next(ticks)))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    w = tokenizer("a b c d e", add_special_tokens=False)["input_ids"]
    rows = [[w[0], eos, pad, pad, pad], [w[0], w[1], w[2], eos, pad], [w[0], w[1], w[2], w[3], w[4]]]
    model = _FakeModel(rows, eos=[eos])
    timing: dict = {}
    gens = generate(model, tokenizer, ["p1", "p2", "p3"], max_new_tokens=5, timing=timing)
    lat = [g.latency_s for g in gens]
    assert lat[0] < lat[1] < lat[2], lat
    assert [g.completion_tokens for g in gens] == [2, 4, 5]
    summary = timing_summary(
        [{"completion_tokens": g.completion_tokens, "latency_s": g.latency_s,
          "first_token_s": g.first_token_s} for g in gens], timing)
    assert summary["latency_p50_s"] != summary["latency_p95_s"]
    assert summary["seconds"] == timing["generation_seconds"] >= lat[2]


def test_inference_throughput_leaves_model_loading_out(tmp_path, monkeypatch, tiny_model_ref,
                                                       capsys):
    """A model load that takes 1000 s (on a shifted clock) must not enter tokens/s."""
    import time as time_mod

    from components.inference import infer

    real_clock, offset = time_mod.perf_counter, [0.0]
    monkeypatch.setattr(time_mod, "perf_counter", lambda: real_clock() + offset[0])

    def slow_load(adapter_dir, base_ref=""):
        from components.common.modeling import load_model, load_tokenizer

        offset[0] += 1000.0
        return load_model(tiny_model_ref, device="cpu").eval(), load_tokenizer(
            tiny_model_ref, padding_side="left")

    from components.common import modeling

    monkeypatch.setattr(modeling, "load_base_and_adapter", slow_load)
    test = tmp_path / "test.jsonl"
    test.write_text('{"instruction": "Say hi", "context": ""}\n'
                    '{"instruction": "Name a colour", "context": "Be short."}\n')
    from components.common.config import InferenceConfig

    meta = infer.run_inference(InferenceConfig(max_new_tokens=6, wandb_project=""), base="",
                               test=str(test), model="adapter",
                               predictions=str(tmp_path / "p"))["predictions"]
    assert meta.load_seconds >= 1000 and meta.seconds < 1000
    # `seconds` is rounded to 1 ms: on a fast machine (0.04 s here) that alone is over 1%.
    low, high = (meta.completion_tokens / (meta.seconds + d) for d in (0.0005, -0.0005))
    assert low - 0.05 <= meta.tokens_per_second <= high + 0.05
    assert meta.device == "cpu"
    assert "progress inference rows 2/2 eta 0s" in capsys.readouterr().out.splitlines()
