"""The export step: the merged model computes what base+adapter computes, and is saved as a model
that loads and answers on its own; a wrong merge, a mangled save or a foreign base stop it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.common.config import ExportConfig
from components.common.errors import InputError
from components.common.results import Export
from components.export import merge

BASE = "embedded://tiny-gemma3"


def make_adapter(out: Path, base_ref: str = BASE, seed: int = 0,
                 trained_bf16: bool | None = None) -> Path:
    """A random, non-zero LoRA adapter (tuned differs from base without training); with
    `trained_bf16`, the metrics.json fine-tune writes says which precision it trained in."""
    import torch
    from peft import LoraConfig, get_peft_model

    from components.common.modeling import load_model, load_tokenizer

    torch.manual_seed(seed)
    model = get_peft_model(
        load_model(base_ref, device="cpu"),
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False,
                   task_type="CAUSAL_LM"),
    )
    model.save_pretrained(out)
    load_tokenizer(base_ref).save_pretrained(out)
    (out / "training_config.json").write_text(json.dumps({"base_model": BASE}))
    if trained_bf16 is not None:
        (out / "metrics.json").write_text(json.dumps({"bf16": trained_bf16}))
    return out


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    return make_adapter(tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def exported(adapter, tmp_path_factory) -> tuple[Path, Export]:
    out = tmp_path_factory.mktemp("export")
    report = merge.run_export(ExportConfig(), base=BASE, model=str(adapter), test="",
                              merged=str(out / "merged"), adapter=str(out / "adapter"))["merged"]
    return out, report


def test_merged_folder_is_a_complete_bf16_model(exported) -> None:
    from safetensors import safe_open

    out, report = exported
    merged = out / "merged"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja",
                 "generation_config.json", merge.EXPORT_FILE):
        assert (merged / name).is_file(), name
    with safe_open(merged / "model.safetensors", framework="pt") as f:
        dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}  # noqa: SIM118
        assert not any("lora" in k for k in f.keys()), "LoRA layers must be merged away"  # noqa: SIM118
    assert dtypes == {"BF16"}
    assert Export.load(merged / merge.EXPORT_FILE) == report
    assert json.loads((merged / "generation_config.json").read_text())["eos_token_id"] == [1, 5]
    adapter_files = {p.name for p in (out / "adapter").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "training_config.json"} <= \
        adapter_files


def test_both_checks_pass_with_room_and_mean_something(exported) -> None:
    _, r = exported
    # fp32: only float rounding separates W x + s·BAx from (W + s·BA) x.
    assert r.merge_max_abs_diff < merge.FP32_TOLERANCE * r.logit_scale
    # bf16: the export drifts about as much as rounding the base alone does.
    assert r.export_max_abs_diff <= r.export_bound
    # ...and both are far below what the adapter changes, so a dropped adapter would show.
    assert r.adapter_effect_max_abs > 20 * r.export_max_abs_diff
    assert r.verify_prompts == len(merge.FALLBACK_PROMPTS) and r.verify_tokens > 40


def test_merged_greedy_answers_equal_base_plus_adapter(exported, adapter) -> None:
    from components.common.generation import generate, prompt_text
    from components.common.modeling import load_model, load_tokenizer
    from components.evaluate.evaluate import load_base_and_adapter

    out, _ = exported
    tok = load_tokenizer(str(out / "merged"), padding_side="left")
    prompts = [prompt_text(tok, [{"role": "user", "content": p}]) for p in merge.FALLBACK_PROMPTS]
    peft_model, _ = load_base_and_adapter(str(adapter), BASE)
    merged = load_model(str(out / "merged"), device="cpu").eval()
    want = [g.text for g in generate(peft_model, tok, prompts, max_new_tokens=24)]
    got = [g.text for g in generate(merged, tok, prompts, max_new_tokens=24)]
    assert got == want and any(want)


def test_export_dtype_follows_the_training_precision(tmp_path) -> None:
    assert merge.export_dtype("auto", str(tmp_path)) == "bfloat16"  # unknown: what vLLM serves
    (tmp_path / "metrics.json").write_text(json.dumps({"bf16": True}))
    assert merge.export_dtype("auto", str(tmp_path)) == "bfloat16"
    (tmp_path / "metrics.json").write_text(json.dumps({"bf16": False}))
    assert merge.export_dtype("auto", str(tmp_path)) == "float32"
    assert merge.export_dtype("bfloat16", str(tmp_path)) == "bfloat16"
    with pytest.raises(InputError, match="choose auto, bfloat16 or float32"):
        merge.export_dtype("fp8", str(tmp_path))


def test_a_cpu_trained_adapter_exports_fp32_exactly(tmp_path) -> None:
    from safetensors import safe_open

    adapter = make_adapter(tmp_path / "adapter", trained_bf16=False)
    report = merge.run_export(ExportConfig(), base=BASE, model=str(adapter), test="",
                              merged=str(tmp_path / "merged"),
                              adapter=str(tmp_path / "a"))["merged"]
    assert report.dtype == "float32" and report.base_drift_max_abs == 0.0
    assert report.export_max_abs_diff <= 10 * report.merge_max_abs_diff + 1e-6
    with safe_open(tmp_path / "merged" / "model.safetensors", framework="pt") as f:
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F32"}  # noqa: SIM118


def test_a_merge_that_drops_the_adapter_is_refused(adapter, tmp_path, monkeypatch) -> None:
    from peft.tuners.lora import LoraModel

    monkeypatch.setattr(LoraModel, "merge_and_unload", lambda self, *a, **kw: self.unload())
    with pytest.raises(merge.ExportMismatch, match="merged logits differ from base\\+adapter"):
        merge.merge_and_verify(BASE, str(adapter), tmp_path / "merged")
    assert not (tmp_path / "merged").exists(), "nothing written when the merge is wrong"


def test_a_mangled_save_is_refused(adapter, tmp_path, monkeypatch) -> None:
    """The saved folder is read back: here the loader hands back the bare base, as if the
    merged weights never reached the disk."""
    from components.common import modeling

    original = modeling.load_model

    def base_instead(ref: str, bf16: bool = False, device: str | None = None):
        return original(BASE if ref.endswith("merged") else ref, bf16=bf16, device=device)

    monkeypatch.setattr(modeling, "load_model", base_instead)
    with pytest.raises(merge.ExportMismatch, match="exported bfloat16 model's logits differ"):
        merge.merge_and_verify(BASE, str(adapter), tmp_path / "merged")


def test_an_adapter_for_another_base_is_one_line(tmp_path) -> None:
    """Same architecture, other shapes: PEFT's size mismatch becomes one readable line."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from components.common.modeling import load_tokenizer
    from components.common.paths import EMBEDDED_MODEL

    config = AutoConfig.from_pretrained(EMBEDDED_MODEL)
    config.hidden_size, config.intermediate_size = 64, 128
    other = tmp_path / "other-base"
    torch.manual_seed(1)
    AutoModelForCausalLM.from_config(config).save_pretrained(other)
    load_tokenizer(BASE).save_pretrained(other)
    adapter = make_adapter(tmp_path / "adapter-of-other", base_ref=str(other))
    (adapter / "training_config.json").write_text("{}")  # identity unknown: shapes must tell
    with pytest.raises(InputError) as err:
        merge.merge_and_verify(BASE, str(adapter), tmp_path / "merged")
    text = str(err.value)
    assert "\n" not in text and "does not match the base model" in text
    assert "size mismatch" in text and "export it with the base it was trained on" in text


def test_an_adapter_trained_on_another_model_is_refused_before_loading(adapter, tmp_path) -> None:
    (tmp_path / "a").mkdir()
    for f in adapter.iterdir():
        (tmp_path / "a" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "a" / "training_config.json").write_text(
        json.dumps({"base_model": "google/gemma-3-1b-it"}))
    with pytest.raises(InputError, match="was trained on google/gemma-3-1b-it but the base model"):
        merge.merge_and_verify(BASE, str(tmp_path / "a"), tmp_path / "merged")
