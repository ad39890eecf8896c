"""QLoRA: the 4-bit base is built, prepared and trained as on a GPU, as far as a CPU allows.

bitsandbytes >= 0.45 runs NF4 on CPU (measured here with 0.50.2: quantize on load, dequantizing
matmuls, backward through them), so the whole QLoRA path runs on the tiny model: NF4 load,
PEFT's k-bit preparation, LoRA training with TRL, saving, and evaluation/inference loading the
base the way the adapter was trained. What a CPU cannot show (bf16 compute speed, the memory an
NF4 base saves on a GPU) is in the `gpu` tests at the end.
"""

from __future__ import annotations

import json

import pytest
import torch

from components.common.config import DataConfig, TrainConfig
from components.common.errors import InputError
from components.common.modeling import adapter_quantization, load_model, quantization_config
from components.fine_tune.train import prepare_quantized, train
from components.prepare_data.prepare import prepare

MODEL = "embedded://tiny-gemma3"


def linear4bit_count(model) -> int:
    import bitsandbytes as bnb

    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def test_the_quantization_config_is_qlora_nf4():
    q = quantization_config("nf4")
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4"
    assert q.bnb_4bit_use_double_quant and q.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config("none") is None
    with pytest.raises(InputError, match="'none' or 'nf4'"):
        quantization_config("int3")


def test_nf4_and_fsdp_are_refused_together():
    with pytest.raises(Exception, match="fsdp with quantization=nf4"):
        TrainConfig(quantization="nf4", distributed="fsdp")


def test_kbit_preparation_on_the_tiny_model():
    model = load_model(MODEL, device="cpu", quantization="nf4")
    assert linear4bit_count(model) == 4 * 7  # every Linear of the 4 decoder layers
    assert model.lm_head.weight.dtype == torch.float32  # the tied head stays unquantized
    model = prepare_quantized(model, on_gpu=False)
    assert not any(p.requires_grad for p in model.parameters()), "the base is frozen"
    kept = [p for n, p in model.named_parameters() if p.dtype != torch.uint8]
    assert kept and all(p.dtype == torch.float32 for p in kept)
    ids = torch.randint(3, 2000, (2, 16))
    assert torch.isfinite(model(input_ids=ids, labels=ids).loss)


@pytest.fixture(scope="module")
def splits(tokenizer):
    cfg = DataConfig(dataset="embedded://dolly-15k-sample.jsonl", base_model=MODEL,
                     max_seq_len=128)
    return prepare(cfg, tokenizer).splits


def test_qlora_trains_and_is_loaded_back_the_same_way(splits, tmp_path):
    cfg = TrainConfig(base_model=MODEL, max_seq_len=128, max_steps=6, learning_rate=3e-3,
                      per_device_train_batch_size=4, gradient_accumulation_steps=1,
                      logging_steps=1, warmup_ratio=0.0, quantization="nf4", eval_steps=100)
    m = train(cfg, splits["train"][:24], splits["validation"][:4], tmp_path / "a").metrics
    assert m["global_step"] == 6 and m["quantization"] == "nf4"
    assert m["base_weights_digest_before"] == m["base_weights_digest_after"]
    assert json.loads((tmp_path / "a" / "training_config.json").read_text())["quantization"] \
        == "nf4"
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "a" / "adapter_model.safetensors")
    assert all(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)

    # Evaluation and inference load the base as the adapter was trained: 4-bit.
    from components.evaluate.evaluate import load_base_and_adapter

    assert adapter_quantization(str(tmp_path / "a")) == "nf4"
    model, tok = load_base_and_adapter(str(tmp_path / "a"), MODEL)
    assert linear4bit_count(model) == 4 * 7
    from components.common.generation import generate, prompt_text

    [out] = generate(model, tok, [prompt_text(tok, splits["test"][0]["messages"])],
                     max_new_tokens=4, batch_size=1)
    assert out.completion_tokens >= 1


def test_an_adapter_without_quantization_loads_in_full_precision(tmp_path):
    (tmp_path / "training_config.json").write_text(json.dumps({"base_model": MODEL}))
    assert adapter_quantization(str(tmp_path)) == "none"


@pytest.mark.gpu
def test_nf4_base_takes_a_fraction_of_the_bf16_memory_on_a_gpu():
    """On a CUDA GPU: the NF4 base of a Gemma 3 architecture with 1152-wide layers holds its
    Linear weights in ~0.52 byte/param against 2 in bf16 (pipelines/memory.py's arithmetic)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    import tempfile

    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(vocab_size=4096, hidden_size=1152, intermediate_size=6912,
                           num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1,
                           head_dim=256)
    with tempfile.TemporaryDirectory() as d:
        Gemma3ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(d)
        used = {}
        for q in ("none", "nf4"):
            torch.cuda.empty_cache()
            before = torch.cuda.memory_allocated()
            model = load_model(d, bf16=True, device="cuda", quantization=q)
            used[q] = torch.cuda.memory_allocated() - before
            del model
    assert used["nf4"] < 0.45 * used["none"], used
