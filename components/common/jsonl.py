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


Prompt = str | list[dict[str, str]]  # a user prompt, or a conversation ending on a user turn


def load_prompts(prompts_uri: str, test_rows: list[dict[str, Any]]) -> list[Prompt]:
    """Prompts from a JSONL file (each row a `prompt`, an `instruction` with an optional
    `context` or `input`, or `messages` ending on a user turn), or the test split's
    conversations up to their last user turn when none is given."""
    from components.common.formats import prompt_messages
    from components.common.storage import read_bytes

    if not prompts_uri:
        return [r["messages"][:-1] if "messages" in r else prompt_messages(r) for r in test_rows]
    prompts: list[Prompt] = []
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
        msgs = prompt_messages(obj)
        if isinstance(msgs, str):
            raise InputError(f"prompts_uri {prompts_uri} line {n} {msgs}")
        single = len(msgs) == 1 and isinstance(obj.get("prompt"), str)
        prompts.append(obj["prompt"] if single else msgs)
    if not prompts:
        raise InputError(f'prompts_uri {prompts_uri} holds no prompts; write {{"prompt": "..."}} '
                         "lines, or leave prompts_uri empty to use the test split")
    return prompts
