"""Pure row transforms for the Dolly format: validate a raw row, turn it into chat messages.

Why pure: these decide what the model learns from; plain functions over dicts are tested with
small fixtures (as torchtune's `AlpacaToMessages`) without files, tokenizers or KFP.
"""

from __future__ import annotations

from typing import Any

DOLLY_FIELDS = ("instruction", "context", "response", "category")
REQUIRED_NONEMPTY = ("instruction", "response")


def row_problem(row: Any) -> str | None:
    """Why `row` is not a usable Dolly row, or None when it is."""
    if not isinstance(row, dict):
        return f"not a JSON object (got {type(row).__name__})"
    missing = [f for f in DOLLY_FIELDS if f not in row]
    if missing:
        return f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    wrong = [f for f in DOLLY_FIELDS if not isinstance(row[f], str)]
    if wrong:
        return "non-string " + ", ".join(f"{f} ({type(row[f]).__name__})" for f in wrong)
    empty = [f for f in REQUIRED_NONEMPTY if not row[f].strip()]
    if empty:
        return f"empty {', '.join(empty)}"
    return None


def user_content(instruction: str, context: str) -> str:
    """The user turn: the instruction, then the context (when there is one) under a heading."""
    instruction, context = instruction.strip(), context.strip()
    if not context:
        return instruction
    return f"{instruction}\n\nContext:\n{context}"


def to_messages(row: dict[str, str], system_prompt: str = "") -> list[dict[str, str]]:
    """Dolly row -> chat messages (system?, user, assistant)."""
    messages = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt.strip()})
    messages.append({"role": "user", "content": user_content(row["instruction"], row["context"])})
    messages.append({"role": "assistant", "content": row["response"].strip()})
    return messages


def dedup_key(row: dict[str, str]) -> tuple[str, str, str]:
    """Rows equal after trimming whitespace count as exact duplicates."""
    return (row["instruction"].strip(), row["context"].strip(), row["response"].strip())
