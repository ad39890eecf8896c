"""The merged model's config and tokenizer files, made readable by the serving image's
transformers 4.x as well as by transformers 5, which wrote them.

Why: transformers 5 keeps RoPE only in `rope_parameters` (per layer type for Gemma 3); 4.x reads
`rope_theta`, `rope_local_base_freq` and `rope_scaling` and silently takes defaults without
them, so Gemma 3 4B/12B (linear scaling, factor 8) would serve with the wrong positions. Its
tokenizer_config names `TokenizersBackend`, a class 4.x does not have, and lists
`extra_special_tokens`, which 4.x expects as a dict. Both forms are written and agree;
transformers 5 reads the legacy keys into the same `rope_parameters`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.common.errors import InputError

# transformers 5's generic tokenizer class -> the 4.x class that loads the same tokenizer.json
LEGACY_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}
LEGACY_ROPE_KEYS = ("rope_theta", "rope_local_base_freq", "rope_scaling")


def _scaling(params: dict[str, Any]) -> dict[str, Any] | None:
    scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    return None if scaling.get("rope_type", "default") == "default" else scaling


def legacy_rope(rope_parameters: dict[str, Any] | None) -> dict[str, Any]:
    """The 4.x keys that say what `rope_parameters` says ({} when there is nothing to say)."""
    if not rope_parameters:
        return {}
    if "rope_type" in rope_parameters or "rope_theta" in rope_parameters:  # one for all layers
        return {"rope_theta": rope_parameters["rope_theta"],
                "rope_scaling": _scaling(rope_parameters)}
    full, local = rope_parameters.get("full_attention"), rope_parameters.get("sliding_attention")
    if not full or not local:
        return {}
    if _scaling(local) is not None:
        raise InputError(
            f"the model scales RoPE on its sliding-window layers ({local}); transformers 4.x "
            "(the serving image's) cannot express that, so vLLM would serve wrong positions"
        )
    return {"rope_theta": full["rope_theta"], "rope_local_base_freq": local["rope_theta"],
            "rope_scaling": _scaling(full)}


def _with_legacy_rope(config: dict[str, Any]) -> dict[str, Any]:
    config = {**config, **legacy_rope(config.get("rope_parameters"))}
    if isinstance(config.get("text_config"), dict):  # Gemma3ForConditionalGeneration (4B, 12B)
        config["text_config"] = _with_legacy_rope(config["text_config"])
    return config


def legacy_tokenizer_config(config: dict[str, Any], model_input_names: list[str]) -> dict[str, Any]:
    """tokenizer_config.json as 4.x reads it; transformers 5 reads it back to the same tokenizer."""
    config = dict(config)
    cls = config.get("tokenizer_class")
    if cls in LEGACY_TOKENIZER_CLASSES:
        config["tokenizer_class"] = LEGACY_TOKENIZER_CLASSES[cls]
        # 4.x's generic fast tokenizer would also return token_type_ids, which Gemma rejects.
        config["model_input_names"] = list(model_input_names)
    extra = config.get("extra_special_tokens")
    if isinstance(extra, list):  # 4.x: a dict of named tokens; a list is `additional_...`
        config.pop("extra_special_tokens")
        config["additional_special_tokens"] = extra
    return config


def write(folder: Path, model_input_names: list[str]) -> None:
    """Rewrite `folder`'s config.json and tokenizer_config.json in place, in both forms."""
    for name, change in (
        ("config.json", _with_legacy_rope),
        ("tokenizer_config.json", lambda c: legacy_tokenizer_config(c, model_input_names)),
    ):
        path = folder / name
        if path.is_file():
            path.write_text(json.dumps(change(json.loads(path.read_text())), indent=2) + "\n")


def rope_disagreements(config: dict[str, Any]) -> list[str]:
    """Where config.json's two RoPE forms say different things (empty: they agree)."""
    wrong = []
    for part in (config, config.get("text_config") or {}):
        expected = legacy_rope(part.get("rope_parameters"))
        wrong += [f"{k}: {part.get(k)!r} != {v!r}" for k, v in expected.items() if part.get(k) != v]
    return wrong
