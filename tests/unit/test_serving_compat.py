"""merged/ loads in the serving image's transformers 4.x as in transformers 5: RoPE in both
config forms, agreeing; a tokenizer_config 4.x reads; the same greedy answers in both stacks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from components.common.config import ExportConfig
from components.common.errors import InputError
from components.common.serving import SERVING_TRANSFORMERS_FLOOR, SERVING_TRANSFORMERS_VERSION
from components.export import merge, serving_files
from tests.unit.test_export import BASE, make_adapter

ASSET = Path(__file__).resolve().parents[2] / "components" / "assets" / "tiny-gemma3"
LOADER = Path(__file__).resolve().parents[1] / "serving_load.py"
# Gemma 3 4B/12B's RoPE (their checkpoints' text_config: rope_scaling linear x8 on the global
# layers, base 1e6; local layers base 1e4), as transformers 5 keeps it.
GEMMA3_4B_ROPE = {
    "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
    "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
}
PROMPTS = [
    "What is the capital of France?",
    "Give me three ideas for a weekend trip, with a reason for each one of them, please.",
    "Classify each as a fruit or a vegetable: apple, carrot, banana.",
]


@pytest.fixture(scope="module")
def merged(tmp_path_factory) -> Path:
    """What the export step writes for a CPU-trained adapter on the embedded model (fp32)."""
    adapter = make_adapter(tmp_path_factory.mktemp("adapter"), trained_bf16=False)
    out = tmp_path_factory.mktemp("export")
    merge.run_export(ExportConfig(), base=BASE, model=str(adapter), test="",
                     merged=str(out / "merged"), adapter=str(out / "adapter"))
    return out / "merged"


def scaled_rope_model(out: Path) -> Path:
    """A tiny random Gemma 3 with 4B's RoPE, saved by transformers 5 with the embedded tokenizer
    and then given the serving files, as export does."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    cfg = json.loads((ASSET / "config.json").read_text())
    cfg["rope_parameters"] = GEMMA3_4B_ROPE
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(Gemma3TextConfig(**{k: v for k, v in cfg.items()
                                                  if not k.startswith("_")}))
    model.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(ASSET)
    tokenizer.save_pretrained(out)
    serving_files.write(out, tokenizer.model_input_names)
    return out


def test_export_writes_both_rope_forms_and_they_agree(merged) -> None:
    from transformers import AutoConfig

    config = json.loads((merged / "config.json").read_text())
    base = json.loads((ASSET / "config.json").read_text())["rope_parameters"]
    assert config["rope_parameters"] == base
    assert (config["rope_theta"], config["rope_local_base_freq"], config["rope_scaling"]) == \
        (1_000_000.0, 10_000.0, None)
    assert serving_files.rope_disagreements(config) == []
    assert AutoConfig.from_pretrained(merged).rope_parameters == base


def test_4b_rope_scaling_is_written_as_4x_reads_it(tmp_path) -> None:
    from transformers import AutoConfig

    config = json.loads((scaled_rope_model(tmp_path) / "config.json").read_text())
    assert config["rope_scaling"] == {"rope_type": "linear", "factor": 8.0}
    assert (config["rope_theta"], config["rope_local_base_freq"]) == (1_000_000.0, 10_000.0)
    assert serving_files.rope_disagreements(config) == []
    # transformers 5 folds the legacy keys into rope_parameters: the same values, not doubled.
    assert AutoConfig.from_pretrained(tmp_path).rope_parameters == GEMMA3_4B_ROPE
    config["rope_scaling"] = None  # what a v5-only config means to 4.x
    wrong = serving_files.rope_disagreements(config)
    assert len(wrong) == 1 and wrong[0].startswith("rope_scaling: None != ")


def test_nested_text_config_and_one_rope_for_all_layers() -> None:
    nested = serving_files._with_legacy_rope({"text_config": {"rope_parameters": GEMMA3_4B_ROPE}})
    assert nested["text_config"]["rope_scaling"] == {"rope_type": "linear", "factor": 8.0}
    flat = serving_files.legacy_rope({"rope_type": "llama3", "factor": 8.0, "rope_theta": 5e5})
    assert flat == {"rope_theta": 5e5, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    with pytest.raises(InputError, match="sliding-window layers"):
        serving_files.legacy_rope({**GEMMA3_4B_ROPE, "sliding_attention": {
            "rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}})


def test_tokenizer_config_names_a_4x_class_and_loads_the_same_in_5(merged) -> None:
    from transformers import AutoTokenizer

    config = json.loads((merged / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["model_input_names"] == ["input_ids", "attention_mask"]
    assert "extra_special_tokens" not in config
    assert config["additional_special_tokens"] == ["<start_of_turn>", "<end_of_turn>"]
    ours, asset = AutoTokenizer.from_pretrained(merged), AutoTokenizer.from_pretrained(ASSET)
    chat = [{"role": "user", "content": PROMPTS[1]}]
    assert ours.apply_chat_template(chat, add_generation_prompt=True) == \
        asset.apply_chat_template(chat, add_generation_prompt=True)
    assert sorted(ours.all_special_tokens) == sorted(asset.all_special_tokens)
    assert ours(PROMPTS[0]).keys() == {"input_ids", "attention_mask"}


def _both_stacks(folder: Path, version: str, tmp_path: Path) -> tuple[dict, dict]:
    from tests import serving_load, serving_transformers

    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS))
    old = serving_transformers.run(version, LOADER, str(folder), str(prompts), "12")
    new = serving_load.main(str(folder), str(prompts), 12)
    return old, new


def _max_logit_diff(a: dict, b: dict) -> float:
    return max(abs(x - y) for p, q in zip(a["answers"], b["answers"], strict=True)
               for x, y in zip(p["last_logits"], q["last_logits"], strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("version", [SERVING_TRANSFORMERS_VERSION, SERVING_TRANSFORMERS_FLOOR])
def test_merged_answers_the_same_in_the_serving_transformers(merged, version, tmp_path) -> None:
    """Needs PyPI once (the environment is cached under build/serving-transformers/)."""
    old, new = _both_stacks(merged, version, tmp_path)
    assert old["transformers"] == version and new["transformers"].startswith("5.")
    assert old["torch"] == new["torch"]
    for a, b in zip(old["answers"], new["answers"], strict=True):
        assert a["prompt_ids"] == b["prompt_ids"]
        assert a["answer_ids"] == b["answer_ids"]
        assert a["answer"] == b["answer"]
    assert len({tuple(a["answer_ids"]) for a in new["answers"]}) > 1  # prompts matter
    assert old["eos_token_id"] == new["eos_token_id"]
    assert old["special_tokens"] == new["special_tokens"]
    assert _max_logit_diff(old, new) < 1e-4


@pytest.mark.slow
def test_4b_rope_scaling_serves_the_same_only_with_the_legacy_keys(tmp_path) -> None:
    folder = scaled_rope_model(tmp_path / "both")
    old, new = _both_stacks(folder, SERVING_TRANSFORMERS_VERSION, tmp_path)
    assert old["rope_scaling"] == {"rope_type": "linear", "factor": 8.0}
    assert [a["answer_ids"] for a in old["answers"]] == [a["answer_ids"] for a in new["answers"]]
    assert _max_logit_diff(old, new) < 1e-4
    # Without them (the v5-only config), 4.x computes other positions: other logits.
    v5_only = shutil.copytree(folder, tmp_path / "v5-only")
    config = json.loads((v5_only / "config.json").read_text())
    for key in serving_files.LEGACY_ROPE_KEYS:
        config.pop(key)
    (v5_only / "config.json").write_text(json.dumps(config))
    wrong, _ = _both_stacks(v5_only, SERVING_TRANSFORMERS_VERSION, tmp_path)
    assert wrong["rope_scaling"] is None
    assert _max_logit_diff(wrong, new) > 100 * _max_logit_diff(old, new) + 1e-3
