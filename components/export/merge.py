"""Export step: the adapter merged into the base (PEFT `merge_and_unload`), checked, saved as one
plain model folder that a serving container (vLLM, `transformers serve`) loads without PEFT.

Why checked: a merge onto the wrong base, or a save that mangles tensors, still loads and
answers; only comparing logits shows it. Merged vs base+adapter must agree tightly in fp32; the
reloaded folder may drift at most `DRIFT_FACTOR` times what rounding the base alone costs.
Weights are saved in bf16 when the adapter was trained in bf16; an fp32 (CPU) adapter stays
fp32 by default, since bf16 rounding flips near-tied greedy tokens of the tiny model.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from components.common.config import ExportConfig
from components.common.errors import InputError
from components.common.results import (
    EXPORT_FILE,
    METRICS_FILE,
    Export,
    ExportedAdapter,
    TrainMetrics,
)
from components.export import serving_files

FP32_TOLERANCE = 1e-4  # check 1: max |Δlogit| / max(1, max |logit|)
DRIFT_FACTOR = 4.0  # check 2: export drift <= factor x the base's own drift (+ floor below)
DRIFT_FLOOR = 1e-3  # x the logit scale
EXPORT_DTYPES = ("auto", "bfloat16", "float32")
VERIFY_PROMPTS = 4
FALLBACK_PROMPTS = (
    "What is the capital of France?",
    "Give me three ideas for a weekend trip.",
    "Summarize: The quick brown fox jumps over the lazy dog.",
    "Classify each as a fruit or a vegetable: apple, carrot, banana.",
)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "training_config.json",
                 METRICS_FILE)


class ExportMismatch(InputError):
    """The merged or exported model does not compute what base+adapter computes."""


def verify_prompts(tokenizer: Any, test_path: str, n: int = VERIFY_PROMPTS) -> list[str]:
    """The first `n` chat-formatted prompts of the test split (the fixed ones when it is empty
    or absent), so the check runs on the kind of text the model serves."""
    from components.common.generation import prompt_text

    rows: list[dict[str, Any]] = []
    path = Path(test_path) if test_path else None
    if path and path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) >= n:
                break
    if rows:
        return [prompt_text(tokenizer, r["messages"]) for r in rows]
    return [prompt_text(tokenizer, [{"role": "user", "content": p}]) for p in FALLBACK_PROMPTS[:n]]


def logits(model: Any, tokenizer: Any, prompts: list[str]) -> list[Any]:
    """fp32 logits of every position of each prompt, one prompt at a time (no padding, so the
    comparison sees the model and nothing else)."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for text in prompts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(device)
            out.append(model(**ids, use_cache=False).logits.float().cpu())
    return out


def max_abs_diff(a: list[Any], b: list[Any]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def logit_scale(a: list[Any]) -> float:
    return max(1.0, max(float(x.abs().max()) for x in a))


def adapter_base(adapter_dir: str) -> str:
    """The base model the adapter was trained on (its training_config.json), '' if unknown."""
    config = Path(adapter_dir) / "training_config.json"
    if not config.is_file():
        return ""
    return str(json.loads(config.read_text()).get("base_model") or "")


def load_base_and_adapter(base_ref: str, adapter_dir: str) -> Any:
    """base + adapter in fp32 on CPU. An adapter that does not fit the base is one InputError
    naming both, not PEFT's page of size mismatches."""
    from peft import PeftModel

    from components.common.modeling import load_model, model_source

    trained_on, base_source = adapter_base(adapter_dir), model_source(base_ref)
    if trained_on and base_source and trained_on != base_source:
        raise InputError(
            f"the adapter in {adapter_dir} was trained on {trained_on} but the base model given "
            f"is {base_source}; export it with the base it was trained on"
        )
    base = load_model(base_ref, bf16=False, device="cpu")
    try:
        model = PeftModel.from_pretrained(base, adapter_dir)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "size mismatch" in line or
                       "not found" in line), first[0] if first else exc.__class__.__name__)
        raise InputError(
            f"the adapter in {adapter_dir} does not match the base model {base_source or base_ref}"
            f" ({detail[:400].rstrip('.')}); export it with the base it was trained on"
            + (f" ({trained_on})" if trained_on else "")
        ) from None
    model.eval()
    return model


def export_dtype(setting: str, adapter_dir: str) -> str:
    """'bfloat16' or 'float32'. auto: fp32 when the adapter was trained in fp32 (its
    metrics.json says bf16: false), else bf16."""
    if setting not in EXPORT_DTYPES:
        raise InputError(f"export_dtype {setting!r}: choose auto, bfloat16 or float32")
    if setting != "auto":
        return setting
    trained = TrainMetrics.load(Path(adapter_dir) / METRICS_FILE)
    return "float32" if trained.bf16 is False else "bfloat16"


def merge_and_verify(
    base_ref: str, adapter_dir: str, merged_dir: Path, prompts_from: str = "",
    dtype: str = "auto",
) -> dict[str, Any]:
    """Merge, check, save. Returns the numbers of both checks (written to export.json)."""
    import torch

    from components.common.modeling import load_model, load_tokenizer, model_source

    t0 = time.perf_counter()
    dtype = export_dtype(dtype, adapter_dir)
    tokenizer = load_tokenizer(adapter_dir, padding_side="left")
    model = load_base_and_adapter(base_ref, adapter_dir)
    prompts = verify_prompts(tokenizer, prompts_from)
    with model.disable_adapter():
        base_logits = logits(model, tokenizer, prompts)
    reference = logits(model, tokenizer, prompts)  # base + adapter, fp32
    adapter_effect = max_abs_diff(reference, base_logits)
    scale = logit_scale(reference)

    t_merge = time.perf_counter()
    merged = model.merge_and_unload()
    merge_seconds = time.perf_counter() - t_merge
    merge_diff = max_abs_diff(logits(merged, tokenizer, prompts), reference)
    if merge_diff > FP32_TOLERANCE * scale:
        raise ExportMismatch(
            f"merged logits differ from base+adapter by {merge_diff:.3g} (fp32 tolerance "
            f"{FP32_TOLERANCE * scale:.3g}); the merge is wrong, not exporting it"
        )

    # The served copy: safetensors, with the tokenizer, chat template and generation config
    # (save_pretrained writes generation_config.json; the tokenizer writes chat_template.jinja).
    merged_dir.mkdir(parents=True, exist_ok=True)
    merged.to(getattr(torch, dtype)).save_pretrained(merged_dir, safe_serialization=True)
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(merged_dir)
    serving_files.write(merged_dir, tokenizer.model_input_names)  # also what 4.x reads
    del merged, model

    # Check 2: what was written, read back (its weights, fp32 arithmetic), against base+adapter;
    # the bound is what the same rounding does to the base model's own logits.
    exported = load_model(str(merged_dir), bf16=False, device="cpu").eval()
    export_diff = max_abs_diff(logits(exported, tokenizer, prompts), reference)
    del exported
    base_drift = 0.0  # fp32 weights: nothing rounded
    if dtype == "bfloat16":
        rounded = load_model(base_ref, bf16=True, device="cpu").float().eval()
        base_drift = max_abs_diff(logits(rounded, tokenizer, prompts), base_logits)
        del rounded
    bound = DRIFT_FACTOR * base_drift + DRIFT_FLOOR * scale
    if export_diff > bound:
        raise ExportMismatch(
            f"the exported {dtype} model's logits differ from base+adapter by {export_diff:.3g}, "
            f"over the bound {bound:.3g} ({DRIFT_FACTOR:g}x what {dtype} rounding costs the base "
            f"model, {base_drift:.3g}); the saved weights are not the merged model"
        )
    report = {
        "base_model": model_source(base_ref),
        "dtype": dtype,
        "verify_prompts": len(prompts),
        "verify_tokens": sum(int(x.shape[1]) for x in reference),
        "logit_scale": round(scale, 4),
        "adapter_effect_max_abs": adapter_effect,
        "merge_max_abs_diff": merge_diff,
        "merge_tolerance": FP32_TOLERANCE * scale,
        "export_max_abs_diff": export_diff,
        "base_drift_max_abs": base_drift,
        "export_bound": bound,
        "merge_seconds": round(merge_seconds, 3),
        "seconds": round(time.perf_counter() - t0, 2),
        "size_bytes": sum(p.stat().st_size for p in merged_dir.glob("*.safetensors")),
    }
    (merged_dir / EXPORT_FILE).write_text(json.dumps(report, indent=2))
    return report


def copy_adapter(adapter_dir: str, out: Path) -> list[str]:
    """The adapter alone (weights, config, tokenizer, training config), for whoever serves
    LoRA adapters on a shared base instead."""
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in sorted(Path(adapter_dir).iterdir()):
        if src.is_file() and (src.name in ADAPTER_FILES or src.name.startswith("tokenizer")
                              or src.name == "chat_template.jinja"):
            shutil.copy2(src, out / src.name)
            copied.append(src.name)
    if "adapter_model.safetensors" not in copied:
        raise InputError(f"{adapter_dir} holds no adapter_model.safetensors; is it a LoRA adapter?")
    return copied


def run_export(
    cfg: ExportConfig, *, base: str, model: str, test: str, merged: str, adapter: str,
) -> dict[str, Export | ExportedAdapter]:
    """The merged model into `merged` (checked against base + the adapter in `model` on prompts
    from the `test` split), the adapter alone into `adapter`. Returns both artifacts' metadata."""
    copy_adapter(model, Path(adapter))
    report = merge_and_verify(base, model, Path(merged), test, cfg.export_dtype)
    print(
        f"export ({report['dtype']}): merged in {report['merge_seconds']:.2f} s; logits max "
        f"|diff| merge {report['merge_max_abs_diff']:.2e} (tolerance "
        f"{report['merge_tolerance']:.1e}), saved model {report['export_max_abs_diff']:.2e} "
        f"(bound {report['export_bound']:.2e}); adapter effect "
        f"{report['adapter_effect_max_abs']:.2e}",
        flush=True,
    )
    return {"merged": Export(**report), "adapter": ExportedAdapter(base_model=report["base_model"])}


def main(argv: list[str] | None = None) -> None:
    from components.common.step import main as step_main

    step_main(run_export, argv)


if __name__ == "__main__":
    main()
