"""What the data steps and the report say about rows, in one place so their counts agree.

Why shared: prepare-data counts rejected rows by reason into its artifacts' metadata and the
report counts them again from the rejected file; two spellings of "reason" gave two different
tables for one run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def reason_kind(reason: str) -> str:
    """'too long: 600 tokens > ...' -> 'too long', 'duplicate of row 3' -> 'duplicate',
    'missing field category' -> 'missing field', 'invalid JSON (...)' -> 'invalid JSON',
    'overlaps train row 7 (near copy)' -> 'overlaps train'."""
    kind = reason.split(" (")[0].split(":")[0].split(" of row ")[0]
    for prefix in ("missing field", "non-string", "empty", "unknown category", "overlaps train"):
        if kind.startswith(prefix):
            return prefix
    return kind


def count_reasons(reasons: Iterable[str]) -> dict[str, int]:
    """Rejected rows per kind of reason, most frequent first."""
    return dict(Counter(reason_kind(r) for r in reasons).most_common())
