"""A Gemma 3 at real size where it counts: the checkpoint's vocabulary and hidden size, a few
layers, random weights, saved as a model folder that `base_model` accepts.

Why: Gemma 3's 262,144-token vocabulary, not its depth, decides whether a step fits in memory
(the LM head of the 1B is 302M of its 1,000M parameters). Two layers reproduce the head's cost
in seconds on a CPU, with no download. The tokenizer is the embedded model's, its vocabulary
padded with `<unused_N>` tokens to the model's, so every id the model can produce decodes.

    uv run python scripts/make_real_size_model.py --out /tmp/gemma3-1b-2l --layers 2
    uv run submit --local --param base_model=/tmp/gemma3-1b-2l --param max_steps=4 ...
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from components.common.paths import ASSETS_DIR

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def padded_tokenizer(out: Path, vocab: int) -> None:
    """The embedded tokenizer in `out`, its BPE vocabulary padded to `vocab` ids."""
    source = ASSETS_DIR / "tiny-gemma3"
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, out / name)
    spec = json.loads((out / "tokenizer.json").read_text())
    words = spec["model"]["vocab"]
    taken = set(words.values()) | {t["id"] for t in spec.get("added_tokens", [])}
    for i in range(vocab):
        if i not in taken:
            words[f"<unused_{i}>"] = i
    (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False))


def build(out: Path, base_model: str = "google/gemma-3-1b-it", layers: int = 2,
          seed: int = 0) -> Path:
    """Write the model folder (bf16 safetensors, as real checkpoints ship) and return it."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, GenerationConfig

    from planning.gemma3 import text_config

    out.mkdir(parents=True, exist_ok=True)
    probe = text_config(base_model, layers)
    padded_tokenizer(out, probe.vocab_size)
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == probe.vocab_size, (len(tok), probe.vocab_size)
    eos = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    config = text_config(base_model, layers, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=eos, dtype="bfloat16")
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=tok.pad_token_id,
        do_sample=False)
    model.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base-model", default="google/gemma-3-1b-it",
                        help="whose vocabulary, hidden size and MLP width to take")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = build(args.out, args.base_model, args.layers, args.seed)
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    print(f"{args.base_model} shape, {args.layers} layers, random weights: {out} ({size:,.0f} MiB)")


if __name__ == "__main__":
    main()
