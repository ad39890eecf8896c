"""The data card's measurements: near-duplicates (MinHash LSH, `datasketch`), train/test
overlap, the token-length histogram against max_seq_len.

Why here: prepare-data computes them and the report renders them; both read one shape.
"""

from __future__ import annotations

import re
from typing import Any

NUM_PERM = 64  # MinHash permutations: Jaccard estimated to about +-0.06 at 0.8
SHINGLE = 3  # word 3-grams
_WORD = re.compile(r"\w+")


def conversation_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] != "system")


def prompt_key(messages: list[dict[str, str]]) -> str:
    """What a test row asks, normalised: equal keys in train and test are exact overlap."""
    turns = [m["content"] for m in messages[:-1] if m["role"] != "system"]
    return " ".join(_WORD.findall("\n".join(turns).lower()))


def shingles(text: str) -> list[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < SHINGLE:
        return [" ".join(words).encode()] if words else [b""]
    return [" ".join(words[i : i + SHINGLE]).encode() for i in range(len(words) - SHINGLE + 1)]


def minhashes(texts: list[str]) -> list[Any]:
    import xxhash
    from datasketch import MinHash

    # xxh32 rather than datasketch's default SHA-1: half the time, and as good for MinHash
    return MinHash.bulk([shingles(t) for t in texts], num_perm=NUM_PERM,
                        hashfunc=xxhash.xxh32_intdigest)


def near_duplicates(ids: list[int], hashes: list[Any], threshold: float) -> list[tuple[int, int]]:
    """(earlier id, later id) pairs estimated at Jaccard >= threshold, each later row once."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    by_id = dict(zip(ids, hashes, strict=True))
    pairs = []
    for i, h in by_id.items():
        match = next((j for j in sorted(lsh.query(h)) if h.jaccard(by_id[j]) >= threshold), None)
        if match is not None:
            pairs.append((match, i))
        lsh.insert(i, h)
    return pairs


def overlap(train: list[tuple[int, str, Any]], test: list[tuple[int, str, Any]],
            threshold: float) -> dict[int, tuple[str, int]]:
    """Test id -> ("exact" | "near", train id) for test rows that copy a training row: the same
    prompt, or a conversation at Jaccard >= threshold. Rows are (id, prompt key, MinHash)."""
    from datasketch import MinHashLSH

    by_prompt = {key: i for i, key, _ in train}
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    hashes = {}
    for i, _, h in train:
        lsh.insert(i, h)
        hashes[i] = h
    found: dict[int, tuple[str, int]] = {}
    for i, key, h in test:
        if key in by_prompt:
            found[i] = ("exact", by_prompt[key])
            continue
        near = next((j for j in sorted(lsh.query(h)) if h.jaccard(hashes[j]) >= threshold), None)
        if near is not None:
            found[i] = ("near", near)
    return found


def histogram(lengths: list[int], max_seq_len: int, bins: int = 16) -> list[dict[str, int]]:
    """Token lengths in equal bins up to max_seq_len, plus one bin above it (dropped rows)."""
    width = max(1, -(-max_seq_len // bins))
    counts = [0] * (bins + 1)
    for n in lengths:
        counts[min(bins, (n - 1) // width) if n <= max_seq_len else bins] += 1
    out = [{"lo": k * width + 1, "hi": min((k + 1) * width, max_seq_len), "rows": counts[k]}
           for k in range(bins)]
    out.append({"lo": max_seq_len + 1, "hi": max(lengths, default=max_seq_len),
                "rows": counts[bins]})
    return out
