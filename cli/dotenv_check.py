"""What a `.env` gets wrong, named per line: lines python-dotenv drops, and names this project
does not read (a typo of a setting would otherwise be silently ignored)."""

from __future__ import annotations

from pathlib import Path


def dotenv_problems(path: Path, known: set[str]) -> list[str]:
    """One sentence per line of `path` that python-dotenv drops or reads under another name."""
    import difflib
    import re

    from dotenv.parser import parse_stream

    out: list[str] = []
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        bindings = list(parse_stream(f))
    for b in bindings:
        first = b.original.string.splitlines()[0] if b.original.string else ""
        where = f"{path} line {b.original.line}"
        m = re.match(r"\s*(?:export\s+)?([^=\s]+)\s*=\s*(.*)", first)
        if b.error:
            key = m.group(1) if m else ""
            spans = b.original.string.count("\n")
            if m and m.group(2)[:1] in "'\"" and m.group(2)[:1]:
                n = b.original.line
                what = (f"the value of {key} opens a {m.group(2)[0]} quote that is never closed"
                        + (f" (line {n + 1} went into it)" if spans == 2 else
                           f" (lines {n + 1}-{n + spans - 1} went into it)" if spans > 2 else ""))
            else:
                what = "not KEY=VALUE" + (f" (key {key})" if key else "")
            out.append(f"{where}: {what}; the line is ignored")
        elif b.key and not b.key.isidentifier():
            bare = b.key.strip("\"'")
            out.append(f"{where}: the key {b.key} is quoted or not a name; write {bare}=... "
                       "(the line is ignored)")
        elif b.key and b.key not in known:
            near = difflib.get_close_matches(b.key, sorted(known), n=1, cutoff=0.8)
            if near or b.key.startswith("DOLLY_LORA_"):
                hint = f"; did you mean {near[0]}?" if near else ""
                out.append(f"{where}: {b.key} is not a setting this project reads{hint}")
    return out
