"""Load the tokenizer and model the same way for every model reference.

Why one place: the embedded tiny Gemma 3 and `google/gemma-3-1b-it` go through exactly the same
`from_pretrained` calls; only the reference resolves differently (`embedded://`, `gs://`, a local
folder or a Hugging Face id, whose HF_TOKEN comes from the environment, never a parameter).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from components.common.errors import InputError
from components.common.paths import resolve_embedded
from components.common.storage import download_folder, is_gcs


def resolve_model_ref(ref: str) -> str:
    """A string `from_pretrained` accepts: a local folder or a hub id."""
    ref = resolve_embedded(ref)
    if is_gcs(ref):
        return str(download_folder(ref, Path(tempfile.mkdtemp(prefix="model-"))))
    return ref


def load_tokenizer(ref: str, padding_side: str = "right") -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolve_model_ref(ref))
    except OSError as exc:
        raise InputError(
            f"cannot load the tokenizer of {ref!r} ({exc.__class__.__name__}); check the model id "
            "or path, and HF_TOKEN for gated models"
        ) from None
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        raise InputError(f"{ref!r} has no chat template; use an instruction-tuned model (…-it)")
    return tok


def best_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def bf16_enabled(setting: str) -> bool:
    """'auto' turns bf16 on only on a GPU that supports it (on CPU it is ~10x slower here)."""
    import torch

    if setting == "false":
        return False
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if setting == "true" and not supported:
        raise InputError("bf16=true needs a GPU with bf16 support; use bf16=auto or false")
    return supported


def load_model(ref: str, bf16: bool = False, device: str | None = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_ref(ref), dtype=dtype, attn_implementation="sdpa"
    )
    return model.to(device or best_device())


def linear_module_names(ref: str) -> set[str]:
    """Leaf names of the model's Linear layers, from its config alone (meta device: no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(resolve_model_ref(ref))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {
        name.rsplit(".", 1)[-1]
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear)
    }


def check_target_modules(ref: str, target_modules: list[str] | str) -> None:
    """Fail before training when LoRA would target modules the model does not have."""
    if target_modules == "all-linear":
        return
    have = linear_module_names(ref)
    missing = [m for m in target_modules if m not in have]
    if missing:
        raise InputError(
            f"target_modules {', '.join(missing)} not found in {ref}; "
            f"its linear layers are: {', '.join(sorted(have))} (or use all-linear)"
        )
