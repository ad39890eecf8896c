"""Instruction-data formats: which one a row is, and the chat conversation it becomes.

Why one module: prepare-data, inference's prompts and the CLI preflight must agree on what a
row means; every format ends as `messages` (system?, user, assistant, ... ending on assistant),
which is what fine-tune, evaluate and the report read.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from components.common.errors import InputError

# Detection order matters: an Alpaca row also has `instruction`.
FORMATS: dict[str, str] = {
    "messages": "messages (a list of {role, content}: optional system, then user/assistant turns)",
    "prompt_completion": "prompt_completion (prompt, completion: strings or message lists)",
    "alpaca": "alpaca (instruction, input, output)",
    "dolly": "dolly (instruction, response; context and category optional)",
}
NO_CATEGORY = "uncategorized"  # the one group rows without a category fall into


def formats_help() -> str:
    return "; ".join(FORMATS.values())


def detect(row: Any) -> str | None:
    """The format a row's fields say it is, or None."""
    if not isinstance(row, dict):
        return None
    if "messages" in row:
        return "messages"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "instruction" in row and "response" in row:
        return "dolly"
    return None


def parse_columns(spec: str) -> dict[str, str]:
    """`instruction:question,response:answer` -> {"question": "instruction", ...} (source -> name)."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        target, sep, source = part.partition(":")
        if not sep or not target.strip() or not source.strip():
            raise InputError(f"columns={spec!r}: {part!r} is not name:column; write e.g. "
                             "columns=instruction:question,response:answer")
        out[source.strip()] = target.strip()
    return out


def rename(row: Any, mapping: dict[str, str]) -> Any:
    if not mapping or not isinstance(row, dict):
        return row
    return {mapping.get(k, k): v for k, v in row.items()}


def choose_format(rows: list[tuple[int, Any]], forced: str, source: str) -> str:
    """The file's one format: forced, or detected from its rows; a mix or none is refused."""
    if forced != "auto":
        return forced
    first: dict[str, tuple[int, Any]] = {}
    for n, row in rows:
        fmt = detect(row)
        if fmt and fmt not in first:
            first[fmt] = (n, row)
    if not first:
        n, row = next(((n, r) for n, r in rows if isinstance(r, dict)), rows[0])
        fields = ", ".join(sorted(row)) if isinstance(row, dict) else type(row).__name__
        raise InputError(
            f"{source}: no row is in a known format (row {n} has {fields}); the formats: "
            f"{formats_help()}; rename fields with columns=instruction:question,... or force "
            "data_format="
        )
    if len(first) > 1:
        shown = "; ".join(f"{fmt} (row {n}: {_short(r)})" for fmt, (n, r) in first.items())
        raise InputError(f"{source} mixes formats: {shown}; give one format per dataset, or "
                         "force one with data_format=")
    return next(iter(first))


def _short(row: Any, limit: int = 100) -> str:
    text = json.dumps(row, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Example:
    """One usable row, as chat messages plus what the report and evaluation show."""

    messages: list[dict[str, str]]
    category: str | None
    instruction: str  # the last user turn (with its context), for tables and samples
    context: str
    response: str  # the last assistant turn: evaluation's reference


def _text(row: dict[str, Any], name: str, required: bool) -> tuple[str, str | None]:
    value = row.get(name)
    if value is None:
        return "", (f"missing field {name}" if required else None)
    if not isinstance(value, str):
        return "", f"non-string {name} ({type(value).__name__})"
    if required and not value.strip():
        return "", f"empty {name}"
    return value, None


def _category(row: dict[str, Any]) -> tuple[str | None, str | None]:
    value = row.get("category")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if not isinstance(value, str):
        return None, f"non-string category ({type(value).__name__})"
    return value, None


def message_problem(messages: Any, need_assistant: bool = True) -> str | None:
    """Why `messages` is not a conversation the pipeline trains on, or None."""
    if not isinstance(messages, list) or not messages:
        return "messages is not a non-empty list"
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(
                m.get("content"), str):
            return f"message {i} is not {{role, content}} with string values"
    roles = [m["role"] for m in messages]
    turns = roles[1:] if roles[0] == "system" else roles
    if not turns:
        return "only a system turn"
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(turns))]
    if turns != expected:
        at = next(i for i, (r, e) in enumerate(zip(turns, expected, strict=True)) if r != e)
        return (f"roles out of order ({', '.join(roles)}): turn {at + 1 + (roles[0] == 'system')} "
                f"is {turns[at]!r}, expected {expected[at]!r} (system first, then user and "
                "assistant alternating)")
    if need_assistant and "assistant" not in turns:
        return "no assistant turn"
    if need_assistant and turns[-1] != "assistant":
        return "ends on a user turn (nothing to learn from); end each conversation on assistant"
    if not need_assistant and turns[-1] != "user":
        return "does not end on a user turn"
    empty = [i for i, m in enumerate(messages, start=1) if m["role"] != "system"
             and not m["content"].strip()]
    if empty:
        return f"empty content in message {empty[0]}"
    return None


def user_content(instruction: str, context: str) -> str:
    """The user turn: the instruction, then the context (when there is one) under a heading."""
    instruction, context = instruction.strip(), context.strip()
    if not context:
        return instruction
    return f"{instruction}\n\nContext:\n{context}"


def _with_system(messages: list[dict[str, str]], system_prompt: str) -> list[dict[str, str]]:
    msgs = [{"role": m["role"], "content": m["content"].strip()} for m in messages]
    if system_prompt.strip() and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": system_prompt.strip()})
    return msgs


def to_example(row: Any, fmt: str, system_prompt: str = "") -> Example | str:
    """The row as an Example, or why it cannot be one (a short reason, counted by kind)."""
    if not isinstance(row, dict):
        return f"not a JSON object (got {type(row).__name__})"
    category, problem = _category(row)
    if problem:
        return problem
    if fmt in ("dolly", "alpaca"):
        answer = "response" if fmt == "dolly" else "output"
        extra = "context" if fmt == "dolly" else "input"
        instruction, p1 = _text(row, "instruction", True)
        response, p2 = _text(row, answer, True)
        context, p3 = _text(row, extra, False)
        missing = [f for f, p in (("instruction", p1), (answer, p2))
                   if p and p.startswith("missing")]
        if len(missing) > 1:
            return f"missing fields {', '.join(missing)}"
        if p1 or p2 or p3:
            return p1 or p2 or p3 or ""
        user = user_content(instruction, context)
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": response}]
        return Example(_with_system(msgs, system_prompt), category, instruction.strip(),
                       context.strip(), response.strip())
    if fmt == "prompt_completion":
        prompt, completion = row.get("prompt"), row.get("completion")
        if prompt is None or completion is None:
            return "missing field " + ("prompt" if prompt is None else "completion")
        if isinstance(prompt, str) and isinstance(completion, str):
            if not prompt.strip() or not completion.strip():
                return "empty " + ("prompt" if not prompt.strip() else "completion")
            msgs = [{"role": "user", "content": prompt}, {"role": "assistant",
                                                          "content": completion}]
        elif isinstance(prompt, list) and isinstance(completion, list):
            msgs = [*prompt, *completion]
            if not completion or any(not isinstance(m, dict) or m.get("role") != "assistant"
                                     for m in completion):
                return "completion is not a list of assistant messages"
        else:
            return "prompt and completion must both be strings or both message lists"
        messages: Any = msgs
    elif fmt == "messages":
        messages = row.get("messages")
    else:
        raise InputError(f"unknown data_format {fmt!r}; the formats: {formats_help()}")
    problem = message_problem(messages)
    if problem:
        return problem
    msgs = _with_system(messages, system_prompt)
    last_user = next(m["content"] for m in reversed(msgs) if m["role"] == "user")
    return Example(msgs, category, last_user, "", msgs[-1]["content"])


def prompt_messages(row: Any, system_prompt: str = "") -> list[dict[str, str]] | str:
    """An inference prompt row (`prompt`, `instruction` [+ `context`/`input`], or `messages`
    ending on a user turn) as the messages to continue, or why it is not one."""
    if not isinstance(row, dict):
        return "is not a JSON object"
    if "messages" in row:
        problem = message_problem(row["messages"], need_assistant=False)
        return problem or _with_system(row["messages"], system_prompt)
    if "prompt" in row:
        text = row["prompt"]
        if isinstance(text, list):
            problem = message_problem(text, need_assistant=False)
            return problem or _with_system(text, system_prompt)
        if not isinstance(text, str) or not text.strip():
            return 'has no non-empty string "prompt" field'
        return _with_system([{"role": "user", "content": text}], system_prompt)
    if "instruction" in row:
        instruction = row["instruction"]
        context = row.get("context", row.get("input", "")) or ""
        if not isinstance(instruction, str) or not instruction.strip() or not isinstance(
                context, str):
            return 'has no non-empty string "instruction" field'
        return _with_system([{"role": "user", "content": user_content(instruction, context)}],
                            system_prompt)
    return ('has no non-empty string "prompt" field (nor "instruction" or "messages"); write '
            '{"prompt": "..."}, {"instruction": "...", "context": "..."} or {"messages": [...]}')


def format_counts(formats: list[str]) -> dict[str, int]:
    return dict(Counter(formats).most_common())
