"""Build the embedded default model: a tiny Gemma 3 with a small BPE tokenizer.

Why: the real default (`google/gemma-3-1b-it`) needs the Hugging Face hub, a token and a GPU. The
local run and the tests need something of the same architecture that loads through the very same
`AutoTokenizer.from_pretrained` / `AutoModelForCausalLM.from_pretrained` code path, offline, in
seconds. A hundred steps of pretraining on the sample's instructions and contexts make it
write word-like text. The output is committed under `components/assets/tiny-gemma3/` (~5 MB),
so this script only needs rerunning when the recipe changes:

    uv run python scripts/make_tiny_model.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from components.common.paths import ASSETS_DIR, EMBEDDED_DATASET

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]

# Gemma's chat template (system text folded into the first user turn, assistant -> "model"), with
# `{% generation %}` markers so `return_assistant_tokens_mask=True` works for this tokenizer too.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{%- if role == 'model' -%}"
    "{{ '<start_of_turn>model\n' }}{% generation %}{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\n' }}{% endgeneration %}"
    "{%- else -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def corpus(path: Path) -> list[str]:
    """Texts to train the BPE merges on: every field of the shipped Dolly sample."""
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts.extend(row[k] for k in ("instruction", "context", "response") if row[k])
    return texts


def build_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=32768,
    )


def build_model(tokenizer, seed: int):
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GenerationConfig

    torch.manual_seed(seed)
    eot = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=32768,
        sliding_window=256,
        layer_types=["sliding_attention", "sliding_attention", "sliding_attention",
                     "full_attention"],
        # With the default 0.02 the tied logits stay flat and LoRA stalls at a loss of ~5.4
        # (measured on this model); 0.1 lets the adapter learn.
        initializer_range=0.1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, eot],
        tie_word_embeddings=True,
        dtype="float32",
    )
    model = Gemma3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, eot],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model


def pretrain(model, tokenizer, texts: list[str], steps: int, seed: int) -> list[float]:
    """A few hundred steps of plain language modelling so the base model writes word-like text.

    Why: a random base model answers with one repeated token, so ROUGE-L is 0 for base and tuned
    alike and the local run shows nothing. It learns from the instructions and contexts only,
    never the responses, so fine-tuning still has something to teach (the answers' style).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    block = 128
    data = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    model.train()
    losses = []
    for _ in range(steps):
        batch = data[torch.randint(len(data), (16,), generator=g)]
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


def prompt_texts(path: Path) -> list[str]:
    """Instructions and contexts of the Dolly sample (no responses)."""
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts.extend(row[k] for k in ("instruction", "context") if row[k])
    return texts


def main(out: Path, vocab_size: int = 2048, seed: int = 0, steps: int = 100) -> Path:
    import torch

    torch.set_flush_denormal(True)
    tokenizer = build_tokenizer(corpus(EMBEDDED_DATASET), vocab_size)
    model = build_model(tokenizer, seed)
    if steps:
        losses = pretrain(model, tokenizer, prompt_texts(EMBEDDED_DATASET), steps, seed)
        print(f"pretrained {steps} steps: loss {losses[0]:.2f} -> {sum(losses[-20:]) / 20:.2f}")
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"tiny Gemma 3: {n:,} parameters, vocab {len(tokenizer)} -> {out}")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS_DIR / "tiny-gemma3")
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-steps", type=int, default=100)
    args = parser.parse_args()
    main(args.out, args.vocab_size, args.seed, args.pretrain_steps)
