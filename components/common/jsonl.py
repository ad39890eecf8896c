"""JSON Lines files, the format every split, prediction and prompt file travels in.

Why here: prepare writes the splits that fine-tune, evaluate, inference and the report read; one
reader/writer keeps their encoding (UTF-8, one object per line, non-ASCII kept) the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.common.errors import InputError


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a JSONL file the pipeline wrote itself (blank lines skipped)."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_prompts(prompts_uri: str, test_rows: list[dict[str, Any]]) -> list[str]:
    """User prompts from a JSONL file (field `prompt`), or from the test split when none given."""
    from components.common.dolly import user_content
    from components.common.storage import read_bytes

    if not prompts_uri:
        return [user_content(r["instruction"], r["context"]) for r in test_rows]
    prompts = []
    try:
        text = read_bytes(prompts_uri).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(
            f"prompts_uri {prompts_uri} is not UTF-8 text; give a JSONL file of "
            '{"prompt": "..."} objects'
        ) from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(
                f"prompts_uri {prompts_uri} line {n} is not JSON; give one object per line like "
                '{"prompt": "..."}'
            ) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj[
            "prompt"
        ].strip():
            raise InputError(
                f'prompts_uri {prompts_uri} line {n} has no non-empty string "prompt" field; '
                'write {"prompt": "..."}'
            )
        prompts.append(obj["prompt"])
    if not prompts:
        raise InputError(f'prompts_uri {prompts_uri} holds no prompts; write {{"prompt": "..."}} '
                         "lines, or leave prompts_uri empty to use the test split")
    return prompts
