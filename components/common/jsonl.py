"""JSON Lines files, the format every split, prediction and prompt file travels in.

Why here: prepare writes the splits that fine-tune, evaluate, inference and the report read; one
reader/writer keeps their encoding (UTF-8, one object per line, non-ASCII kept) the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
