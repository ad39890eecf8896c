"""Prepare step: read Dolly-format rows, validate, format as chat, filter, split, write JSONL.

Outputs three splits (train/validation/test) and the rejected rows, each one JSONL file, with the
numbers a person checks first (row counts, per-category counts, token-length stats, a hash of the
split) returned as metadata for the KFP artifacts.

Run it alone:

    uv run python -m components.prepare_data.prepare --dataset embedded://dolly-15k-sample.jsonl \
        --base_model embedded://tiny-gemma3 --train /tmp/prep/train.jsonl \
        --validation /tmp/prep/validation.jsonl --test /tmp/prep/test.jsonl \
        --rejected /tmp/prep/rejected.jsonl

(`--help` lists every setting of `DataConfig`.)
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common.config import DOLLY_CATEGORIES, DataConfig, normalize_category
from components.common.dolly import dedup_key, row_problem, to_messages
from components.common.errors import InputError
from components.common.jsonl import write_jsonl
from components.common.paths import looks_like_hub_id, resolve_embedded
from components.common.results import PreparedData
from components.common.rows import count_reasons
from components.common.storage import is_gcs, read_bytes

# What the CLI may call: the step's public entry points (tests/unit/test_layout.py).
__all__ = ["Prepared", "check", "run_prepare"]

SPLITS = ("train", "validation", "test")


@dataclass
class Prepared:
    splits: dict[str, list[dict[str, Any]]]
    rejected: list[dict[str, Any]]
    source_rows: int
    filtered_rows: int
    stats: dict[str, Any] = field(default_factory=dict)


def read_jsonl(data: bytes, source: str) -> list[tuple[int, Any]]:
    """(1-based line number, parsed value or a `_ParseError`) for every non-blank line."""
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not content
    except UnicodeDecodeError:
        raise InputError(
            f"{source} is not UTF-8 text; give a JSONL file (one JSON object per line)"
        ) from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        raise InputError(
            f"{source} is a JSON array, not JSONL; write one JSON object per line "
            "(e.g. `jq -c '.[]' file.json > file.jsonl`)"
        )
    rows: list[tuple[int, Any]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            rows.append((n, _ParseError(f"invalid JSON ({exc.msg})")))
    if not rows:
        raise InputError(f"{source} is empty; it needs Dolly rows, one JSON object per line")
    if isinstance(rows[0][1], _ParseError):
        raise InputError(
            f"{source} is not JSONL: line {rows[0][0]} is not JSON; give one JSON object per line "
            "with instruction, context, response, category"
        )
    return rows


class _ParseError(str):
    """A line that did not parse; kept as a row so it is counted and reported, not dropped."""


def load_source(source: str) -> list[tuple[int, Any]]:
    """Raw rows from a Hugging Face dataset id, a local or gs:// JSONL, or the embedded sample."""
    source = resolve_embedded(source)
    if is_gcs(source) or not looks_like_hub_id(source):
        return read_jsonl(read_bytes(source), source)
    import datasets

    try:
        ds = datasets.load_dataset(source, split="train")
    except Exception as exc:  # the hub raises many types; all mean "cannot read this dataset"
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
        raise InputError(
            f"{source!r} is not a file here ({Path.cwd()}) and cannot be loaded as a Hugging Face "
            f"dataset id ({reason}); give the path of a JSONL file (e.g. ./{source}.jsonl) or a "
            "dataset id the hub serves (HF_TOKEN for gated ones)"
        ) from None
    return [(i, dict(r)) for i, r in enumerate(ds, start=1)]


def check_bad_rows(bad: list[dict[str, Any]], total: int, cfg: DataConfig, source: str) -> None:
    if not bad or len(bad) / total <= cfg.max_bad_row_fraction:
        return
    first = "; ".join(f"row {b['row']}: {b['reason']}" for b in bad[:3])
    unknown = Counter(b["category"] for b in bad if "category" in b)
    if unknown:
        names = ", ".join(f"{c!r} ({n})" for c, n in unknown.most_common(5))
        fix = (f"rows with categories Dolly does not have ({names}): rename them to one of "
               f"{', '.join(DOLLY_CATEGORIES)}")
    else:
        fix = "fix them"
    if len(bad) == total:
        raise InputError(
            f"none of the {total} rows in {source} is a usable Dolly row ({first}); each line "
            "must be a JSON object with string fields instruction, context, response and "
            f"category{'; ' + fix if unknown else ''}"
        )
    raise InputError(
        f"{len(bad)} of {total} rows in {source} are unusable ({first}); {fix}, or raise "
        f"max_bad_row_fraction to {len(bad) / total:.3f} or more to skip them"
    )


class TooFewRows(InputError):
    """Not enough rows for train, validation and test; `prepare` adds why rows went missing."""


def _allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
    """`total` rows shared out in proportion to `sizes` (largest remainder, ties by name)."""
    n = sum(sizes.values())
    quota = {k: total * v / n for k, v in sizes.items()} if n else {}
    alloc = {k: int(q) for k, q in quota.items()}
    for k in sorted(sizes, key=lambda k: (alloc[k] - quota[k], k))[: total - sum(alloc.values())]:
        alloc[k] += 1
    return alloc


def split_rows(
    rows: list[dict[str, Any]], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[dict[str, Any]]]:
    """Stratified by category, deterministic by seed: same rows and seed, same split.

    The split sizes are those of a plain split (test = max(1, round(n * test_fraction)), the
    same for validation), shared out over the categories in proportion to their rows, so a
    category of a quarter of the data holds about a quarter of the test rows. Within a
    category, rows are taken in one seeded shuffle of all rows (sorted by id first)."""
    order = sorted(rows, key=lambda r: r["id"])
    random.Random(seed).shuffle(order)
    n = len(order)
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise TooFewRows(
            f"only {n} row{'s' if n != 1 else ''} remain{'s' if n == 1 else ''}: too few for a "
            f"train split next to {n_val} validation and {n_test} test rows"
        )
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for r in order:
        by_cat.setdefault(str(r.get("category", "")), []).append(r)
    sizes = {c: len(v) for c, v in by_cat.items()}
    test_n = _allocate(sizes, n_test)
    val_n = _allocate({c: sizes[c] - test_n[c] for c in sizes}, n_val)
    where: dict[Any, str] = {}
    for c, members in by_cat.items():
        for i, r in enumerate(members):
            where[r["id"]] = ("test" if i < test_n[c] else
                              "validation" if i < test_n[c] + val_n[c] else "train")
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in ("test", "validation", "train")}
    for r in order:  # each split keeps the seeded order (eval_max_rows takes a fair sample)
        out[where[r["id"]]].append(r)
    return out


def split_hash(splits: dict[str, list[dict[str, Any]]]) -> str:
    """Fingerprint of which source rows went where: equal hashes mean identical splits."""
    h = hashlib.sha256()
    for name in SPLITS:
        h.update(name.encode())
        h.update(json.dumps([r["id"] for r in splits[name]]).encode())
    return h.hexdigest()[:16]


def length_stats(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {}
    q = statistics.quantiles(lengths, n=20) if len(lengths) > 1 else [lengths[0]] * 19
    return {
        "min": min(lengths),
        "mean": round(statistics.fmean(lengths), 1),
        "p50": statistics.median(lengths),
        "p95": q[18],
        "max": max(lengths),
    }


def token_lengths(tokenizer: Any, conversations: list[list[dict[str, str]]]) -> list[int]:
    """Tokens per formatted conversation, with the model's own chat template."""
    texts = tokenizer.apply_chat_template(conversations, tokenize=False)
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in enc]


def prepare(
    cfg: DataConfig, tokenizer: Any = None, *, tokenizer_loader: Callable[[], Any] | None = None
) -> Prepared:
    """All of the step's logic, in memory. Raises InputError before writing anything.

    Every check on the file itself (format, fields, categories, duplicates) runs before the
    tokenizer is needed: give `tokenizer_loader` instead of `tokenizer` and a bad file is
    refused before a large tokenizer (and transformers) is loaded."""
    raw = load_source(cfg.dataset)
    total = len(raw)
    rejected: list[dict[str, Any]] = []
    bad = []
    valid: list[tuple[int, dict[str, str]]] = []
    renamed: Counter[str] = Counter()
    for n, obj in raw:
        reason = str(obj) if isinstance(obj, _ParseError) else row_problem(obj)
        if reason:
            bad.append({"row": n, "reason": reason})
            continue
        category = normalize_category(obj["category"])
        if category not in DOLLY_CATEGORIES:
            bad.append({"row": n, "reason": f"unknown category {obj['category']!r}",
                        "category": obj["category"]})
            continue
        if category != obj["category"]:
            renamed[f"{obj['category']} -> {category}"] += 1
            obj = {**obj, "category": category}
        valid.append((n, obj))
    check_bad_rows(bad, total, cfg, cfg.dataset)
    rejected.extend({"row": b["row"], "reason": b["reason"]} for b in bad)

    present = Counter(r["category"] for _, r in valid)
    wanted = cfg.category_list
    if wanted:
        missing = [c for c in wanted if c not in present]
        if len(missing) == len(wanted):
            raise InputError(
                f"categories {', '.join(wanted)} match no rows; the data has "
                + ", ".join(f"{c} ({k})" for c, k in sorted(present.items()))
            )
    filtered = [(n, r) for n, r in valid if not wanted or r["category"] in wanted]

    seen: dict[tuple[str, str, str], int] = {}
    unique: list[tuple[int, dict[str, str]]] = []
    for n, r in filtered:
        key = dedup_key(r)
        if key in seen:
            rejected.append({"row": n, "reason": f"duplicate of row {seen[key]}"})
            continue
        seen[key] = n
        unique.append((n, r))
    _check_enough(len(unique), total, cfg, rejected, len(valid) - len(filtered))

    convs = [to_messages(r, cfg.system_prompt) for _, r in unique]
    if tokenizer is None and convs:
        tokenizer = tokenizer_loader() if tokenizer_loader else None
        if tokenizer is None:
            raise ValueError("prepare needs a tokenizer or a tokenizer_loader")
    lengths = token_lengths(tokenizer, convs) if convs else []
    kept: list[dict[str, Any]] = []
    too_long = []
    for (n, r), msgs, length in zip(unique, convs, lengths, strict=True):
        if length > cfg.max_seq_len:
            too_long.append(length)
            rejected.append(
                {"row": n, "reason": f"too long: {length} tokens > max_seq_len {cfg.max_seq_len}"}
            )
            continue
        kept.append(
            {
                "id": n,
                "category": r["category"],
                "instruction": r["instruction"],
                "context": r["context"],
                "response": r["response"],
                "messages": msgs,
                "num_tokens": length,
            }
        )
    if not kept:
        if too_long:
            raise InputError(
                f"nothing left: all {len(too_long)} rows are longer than max_seq_len="
                f"{cfg.max_seq_len} tokens (shortest {min(too_long)}); raise max_seq_len"
            )
        raise InputError(f"nothing left after filtering {cfg.dataset}; check categories and data")

    try:
        splits = split_rows(kept, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    except TooFewRows as exc:
        raise TooFewRows(f"{exc} ({_why_dropped(total, rejected, len(valid) - len(filtered))}); "
                         "use more data or smaller fractions") from None
    rejected.sort(key=lambda r: r["row"])
    selected = wanted or sorted(present)
    test_cats = {r["category"] for r in splits["test"]}
    stats = {
        "source_rows": total,
        "kept_rows": len(kept),
        "rejected_rows": len(rejected),
        "filtered_rows": len(valid) - len(filtered),
        "rejected_by_reason": count_reasons(r["reason"] for r in rejected),
        "split_hash": split_hash(splits),
        "token_lengths": length_stats([r["num_tokens"] for r in kept]),
        **{f"{name}_rows": len(rows) for name, rows in splits.items()},
        "categories": {
            name: dict(sorted(Counter(r["category"] for r in rows).items()))
            for name, rows in splits.items()
        },
        "selected_categories": selected,
        # Selected categories the test split has no row of: no per-category verdict for them.
        "categories_without_test_rows": [c for c in selected if c not in test_cats],
        "renamed_categories": dict(renamed),
    }
    return Prepared(splits, rejected, total, len(valid) - len(filtered), stats)


def _why_dropped(total: int, rejected: list[dict[str, Any]], filtered: int) -> str:
    """'of 10 rows read, 9 were dropped as exact duplicates' and the like."""
    plural = {"duplicate": "exact duplicates", "too long": "longer than max_seq_len"}
    parts = [f"{n} {plural.get(k, k)}" for k, n in count_reasons(
        r["reason"] for r in rejected).items()]
    if filtered:
        parts.append(f"{filtered} outside the chosen categories")
    return f"{total} read" + (f"; dropped: {', '.join(parts)}" if parts else "")


def _check_enough(
    n: int, total: int, cfg: DataConfig, rejected: list[dict[str, Any]], filtered: int
) -> None:
    """Refuse, before tokenizing, a file that cannot fill train, validation and test, saying
    where the rows went (a file of duplicates says so)."""
    n_test = max(1, round(n * cfg.test_fraction))
    n_val = max(1, round(n * cfg.val_fraction)) if cfg.val_fraction > 0 else 0
    if n - n_test - n_val >= 1:
        return
    raise TooFewRows(
        f"only {n} distinct usable row{'s' if n != 1 else ''} in {cfg.dataset} "
        f"({_why_dropped(total, rejected, filtered)}): too few for a train split next to "
        f"{n_val} validation and {n_test} test row{'s' if n_test != 1 else ''}; use more data"
        + (" or smaller fractions" if n > 1 else "")
    )


def check(cfg: DataConfig) -> Prepared:
    """Every check the step makes, writing nothing: the rows as it would split them. The file's
    format and rows are checked before the tokenizer (and transformers) loads, so a bad file is
    refused in about a second."""
    from components.common.modeling import load_tokenizer
    from components.common.paths import resolve_embedded

    resolve_embedded(cfg.base_model)  # an unknown embedded:// name, before reading anything
    return prepare(cfg, tokenizer_loader=lambda: load_tokenizer(cfg.base_model))


def run_prepare(
    cfg: DataConfig, *, train: str, validation: str, test: str, rejected: str, run_id: str = "",
    data_key: str = "",
) -> dict[str, PreparedData]:
    """Validate, prepare, then write the four JSONL files; returns each one's metadata.

    Nothing is written unless the whole preparation succeeded. The metadata holds the stats
    (row counts, categories, token lengths, split hash) and the data config; each file is logged
    to the trackers as a reference artifact."""
    from components.common.modeling import load_tokenizer, model_source
    from components.common.step import secret_fields, step_run

    out_paths = {"train": train, "validation": validation, "test": test, "rejected": rejected}
    with step_run("prepare-data", cfg, run_id, output_path=train) as step:
        prepared = prepare(cfg, tokenizer_loader=lambda: load_tokenizer(cfg.base_model))
        for name in SPLITS:
            write_jsonl(out_paths[name], prepared.splits[name])
        write_jsonl(rejected, prepared.rejected)
        flat = {k: v for k, v in prepared.stats.items() if isinstance(v, int | float | str)}
        step.tracker.summary(flat)
        for name, path in out_paths.items():
            step.tracker.log_reference(f"{name}-split", "dataset", path, {
                "rows": len(prepared.splits.get(name, prepared.rejected)),
                "split_hash": prepared.stats["split_hash"], "source": cfg.dataset})
        config = {**cfg.model_dump(exclude=set(secret_fields(cfg))),
                  "base_model": model_source(cfg.base_model)}
        # data_key (the data-key step's content key) is in the cache key; kept for the lineage
        stats = {**prepared.stats, "data_key": data_key, "config": config,
                 "wandb_url": step.tracker.url or "",
                 "tracking": step.tracker.report(), "step_seconds": step.seconds()}
    shared = {k: v for k, v in stats.items() if k != "categories"}
    return {
        name: PreparedData(
            **shared, rows=stats.get(f"{name}_rows", stats["rejected_rows"]),
            categories=stats["categories"].get(name, {}))
        for name in out_paths
    }


def main(argv: list[str] | None = None) -> None:
    from components.common.step import main as step_main

    step_main(run_prepare, argv)


if __name__ == "__main__":
    main()
