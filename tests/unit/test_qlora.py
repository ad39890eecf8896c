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


def save_gemma(folder, hidden: int, heads: int, head_dim: int, intermediate: int) -> str:
    """A one-layer Gemma 3 with random weights (one key/value head), saved for `load_model`."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=256, hidden_size=hidden, intermediate_size=intermediate,
                           num_hidden_layers=1, num_attention_heads=heads, num_key_value_heads=1,
                           head_dim=head_dim, layer_types=["full_attention"],
                           max_position_embeddings=256, initializer_range=0.1)
    Gemma3ForCausalLM(cfg).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def avx512bf16(monkeypatch):
    """bitsandbytes believes this CPU has AVX-512 BF16, whatever it has: every Linear4bit built
    from here on takes the packed-kernel path in eval mode."""
    import bitsandbytes.nn.modules as bnb_modules

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)


def fast_path_layers(model) -> set[str]:
    import bitsandbytes as bnb

    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
            if isinstance(m, bnb.nn.Linear4bit) and m.support_avx512bf16_for_cpu}


@pytest.mark.parametrize("n", [16, 32, 48, 64, 96])
@pytest.mark.parametrize("k", [32, 48, 64, 96, 128, 192])
def test_the_packed_kernel_rule_is_what_bitsandbytes_repacking_accepts(n, k):
    """The shapes `packed_cpu_kernel_refusal` lets through are exactly those bitsandbytes'
    own repacking for the AVX-512 BF16 kernel takes (plain torch: runs on any CPU)."""
    import bitsandbytes.functional as F

    from components.common.modeling import packed_cpu_kernel_refusal

    q, state = F.quantize_4bit(torch.randn(n, k, dtype=torch.bfloat16), blocksize=64,
                               compress_statistics=True, quant_type="nf4")
    try:
        F._convert_weight_packed_for_cpu(q, state)
        repacks = True
    except (AssertionError, RuntimeError):
        repacks = False
    refusal = packed_cpu_kernel_refusal(n, k, 64)
    assert repacks == (refusal == ""), (n, k, refusal)


def test_every_real_gemma3_text_layer_fits_the_packed_cpu_kernel():
    """The guard costs the real sizes nothing: every decoder Linear of Gemma 3 1B/4B/12B keeps
    bitsandbytes' fast CPU kernel. (The 4B/12B SigLIP tower's 4304-wide MLP would not; it runs
    only on images, and the guard covers it the same way.)"""
    from components.common.modeling import packed_cpu_kernel_refusal
    from planning.gemma3 import GEMMA3

    for name, arch in GEMMA3.items():
        for layer, (k, n) in arch.text.linear_shapes.items():
            assert packed_cpu_kernel_refusal(n, k, 64) == "", (name, layer)


def test_a_4bit_model_the_packed_cpu_kernel_cannot_take_still_evaluates(tmp_path, avx512bf16):
    """On a CPU with AVX-512 BF16 (forced here, so on any CPU) a 4-bit layer in eval mode
    without grad repacks its weight for bitsandbytes' fast kernel, which needs 32 | outputs:
    before the loader's guard, this model's first forward failed with 'N must be divisible by
    block_n'. Every layer here misfits (48, 16 and 80 outputs), so none may take that path."""
    model = load_model(save_gemma(tmp_path, hidden=48, heads=3, head_dim=16, intermediate=80),
                       device="cpu", quantization="nf4")
    ids = torch.randint(3, 250, (2, 12))
    with torch.no_grad():
        training_path = model.train()(input_ids=ids).logits  # training never repacks
        evaluated = model.eval()(input_ids=ids).logits
    assert torch.equal(evaluated, training_path)
    assert linear4bit_count(model) == 7 and fast_path_layers(model) == set()


def test_only_the_layers_that_misfit_leave_the_packed_cpu_kernel(tmp_path, avx512bf16):
    """A 16-wide key/value head (the old benchmark smoke config): k_proj and v_proj take the
    generic path; every other layer, like every layer of the tiny model and of the real Gemma 3
    sizes, keeps the fast kernel."""
    model = load_model(save_gemma(tmp_path, hidden=64, heads=4, head_dim=16, intermediate=256),
                       device="cpu", quantization="nf4")
    assert fast_path_layers(model) == {"q_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    tiny = load_model(MODEL, device="cpu", quantization="nf4")
    assert sum(m.support_avx512bf16_for_cpu for m in tiny.modules()
               if hasattr(m, "support_avx512bf16_for_cpu")) == 4 * 7


def test_a_mixed_4bit_model_evaluates_on_the_real_avx512bf16_kernel(tmp_path):
    """Where the CPU really has AVX-512 BF16: the layers that fit run the packed kernel, the
    others the generic path, in one forward; the logits match training mode's within bf16."""
    from bitsandbytes.functional import has_avx512bf16

    if not has_avx512bf16():
        pytest.skip("this CPU has no AVX-512 BF16 (the forced-flag tests above cover the guard)")
    model = load_model(save_gemma(tmp_path, hidden=64, heads=4, head_dim=16, intermediate=256),
                       device="cpu", quantization="nf4")
    ids = torch.randint(3, 250, (2, 12))
    with torch.no_grad():
        training_path = model.train()(input_ids=ids).logits
        evaluated = model.eval()(input_ids=ids).logits
    import bitsandbytes as bnb

    packed = {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
              if isinstance(m, bnb.nn.Linear4bit)
              and getattr(m.weight.quant_state, "packing_format_for_cpu", False)}
    assert packed == {"q_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    diff = (evaluated - training_path).abs().max() / training_path.abs().max()
    print(f"packed-kernel logits vs generic path: {diff:.2e} of the logit scale")
    assert diff < 0.05


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
    assert m.global_step == 6 and m.quantization == "nf4"
    assert m.base_weights_digest_before == m.base_weights_digest_after
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
    Linear weights in ~0.52 byte/param against 2 in bf16 (planning/memory.py's arithmetic)."""
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
