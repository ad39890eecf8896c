"""Prepare step: read instruction rows (Dolly, Alpaca, chat messages, prompt/completion), validate,
format as chat, filter, split, write JSONL and the data card.

Outputs three splits (train/validation/test) and the rejected rows, each one JSONL file, with the
numbers a person checks first (row counts, per-category counts, token-length stats, a hash of the
split) returned as metadata for the KFP artifacts.

Run it alone:

    uv run python -m components.prepare_data.prepare --dataset embedded://dolly-15k-sample.jsonl \
        --base_model embedded://tiny-gemma3 --train /tmp/prep/train.jsonl \
        --validation /tmp/prep/validation.jsonl --test /tmp/prep/test.jsonl \
        --rejected /tmp/prep/rejected.jsonl --data_card /tmp/prep/data_card.json

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

from components.common import datacard
from components.common.config import DOLLY_CATEGORIES, DataConfig, normalize_category
from components.common.errors import InputError
from components.common.formats import (
    FORMATS,
    NO_CATEGORY,
    Example,
    choose_format,
    parse_columns,
    rename,
    to_example,
)
from components.common.jsonl import write_jsonl
from components.common.results import PreparedData
from components.common.rows import count_reasons
from components.common.sources import ParseError, Source, read_source

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
    card: dict[str, Any] = field(default_factory=dict)


def check_bad_rows(bad: list[dict[str, Any]], total: int, cfg: DataConfig, source: str,
                   fmt: str) -> None:
    if not bad or len(bad) / total <= cfg.max_bad_row_fraction:
        return
    by_reason: dict[str, list[str]] = {}
    for b in bad[:3]:
        by_reason.setdefault(b["reason"], []).append(str(b["row"]))
    first = "; ".join(f"row{'s' if len(n) > 1 else ''} {', '.join(n)}: {r}"
                      for r, n in by_reason.items())
    unknown = Counter(b["category"] for b in bad if "category" in b)
    if unknown:
        names = ", ".join(f"{c!r} ({n})" for c, n in unknown.most_common(5))
        fix = (f"rows with categories Dolly does not have ({names}): rename them to one of "
               f"{', '.join(DOLLY_CATEGORIES)}, or drop the category field of a file that is "
               "not Dolly")
    else:
        fix = "fix them"
    if len(bad) == total:
        raise InputError(
            f"none of the {total} rows in {source} is a usable {fmt} row ({first}); each row "
            f"must be {FORMATS[fmt]}{'; ' + fix if unknown else ''}"
        )
    raise InputError(
        f"{len(bad)} of {total} rows in {source} are unusable ({first}); {fix}, or raise "
        f"max_bad_row_fraction to {len(bad) / total:.3f} or more to skip them"
    )


def check_mapping(mapping: dict[str, str], rows: list[tuple[int, Any]], source: str,
                  spec: str) -> None:
    """Every column a `columns=` mapping names exists in the data."""
    fields: set[str] = set()
    for _, r in rows:
        if isinstance(r, dict):
            fields.update(r)
    missing = [c for c in mapping if c not in fields]
    if missing:
        raise InputError(
            f"columns={spec}: {source} has no column {', '.join(map(repr, missing))} (its "
            f"fields: {', '.join(sorted(fields)[:12])}); map name:column with a column it has"
        )


def read_examples(cfg: DataConfig) -> tuple[Source, str, list[tuple[int, Example, str]],
                                            list[dict[str, Any]], Counter[str]]:
    """The source's rows as Examples with their category, checked: (source, format, usable
    rows, bad rows, renamed categories). Raises on a file that is unusable as a whole."""
    mapping = parse_columns(cfg.columns)
    src = read_source(cfg.dataset, cfg.dataset_split, cfg.dataset_config, cfg.dataset_revision)
    check_mapping(mapping, src.rows, cfg.dataset, cfg.columns)
    raw = [(n, rename(obj, mapping)) for n, obj in src.rows]
    fmt = choose_format(raw, cfg.data_format, cfg.dataset)
    bad: list[dict[str, Any]] = []
    valid: list[tuple[int, Example, str]] = []
    renamed: Counter[str] = Counter()
    for n, obj in raw:
        ex = str(obj) if isinstance(obj, ParseError) else to_example(obj, fmt, cfg.system_prompt)
        if isinstance(ex, str):
            bad.append({"row": n, "reason": ex})
            continue
        category = (ex.category or "").strip() or NO_CATEGORY
        if fmt == "dolly" and ex.category is not None:  # Dolly's names, as Dolly spells them
            category = normalize_category(ex.category)
            if category not in DOLLY_CATEGORIES:
                bad.append({"row": n, "reason": f"unknown category {ex.category!r}",
                            "category": ex.category})
                continue
            if category != ex.category:
                renamed[f"{ex.category} -> {category}"] += 1
        valid.append((n, ex, category))
    check_bad_rows(bad, len(raw), cfg, cfg.dataset, fmt)
    return src, fmt, valid, bad, renamed


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
    src, fmt, valid, bad, renamed = read_examples(cfg)
    total = len(src.rows)
    rejected: list[dict[str, Any]] = [{"row": b["row"], "reason": b["reason"]} for b in bad]

    present = Counter(c for _, _, c in valid)
    wanted = cfg.category_list
    if wanted and not any(c in present for c in wanted):
        raise InputError(
            f"categor{'y' if len(wanted) == 1 else 'ies'} {', '.join(wanted)} match no rows; "
            "the data has " + ", ".join(f"{c} ({k})" for c, k in sorted(present.items()))
        )
    filtered = [v for v in valid if not wanted or v[2] in wanted]

    seen: dict[str, int] = {}
    unique: list[tuple[int, Example, str]] = []
    for n, ex, c in filtered:
        key = json.dumps([[m["role"], m["content"]] for m in ex.messages], ensure_ascii=False)
        if key in seen:
            rejected.append({"row": n, "reason": f"duplicate of row {seen[key]}"})
            continue
        seen[key] = n
        unique.append((n, ex, c))
    n_filtered = len(valid) - len(filtered)
    _check_enough(len(unique), total, cfg, rejected, n_filtered)

    convs = [ex.messages for _, ex, _ in unique]
    if tokenizer is None and convs:
        tokenizer = tokenizer_loader() if tokenizer_loader else None
        if tokenizer is None:
            raise ValueError("prepare needs a tokenizer or a tokenizer_loader")
    if any(sum(m["role"] == "assistant" for m in c) > 1 for c in convs):
        check_multi_turn_template(tokenizer, cfg.dataset)
    lengths = token_lengths(tokenizer, convs) if convs else []
    kept: list[dict[str, Any]] = []
    too_long = []
    for (n, ex, c), length in zip(unique, lengths, strict=True):
        if length > cfg.max_seq_len:
            too_long.append(length)
            rejected.append(
                {"row": n, "reason": f"too long: {length} tokens > max_seq_len {cfg.max_seq_len}"}
            )
            continue
        kept.append({"id": n, "category": c, "instruction": ex.instruction,
                     "context": ex.context, "response": ex.response, "messages": ex.messages,
                     "num_tokens": length, "format": fmt})
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
        raise TooFewRows(f"{exc} ({_why_dropped(total, rejected, n_filtered)}); "
                         "use more data or smaller fractions") from None
    hashes = dict(zip([r["id"] for r in kept], datacard.minhashes(
        [datacard.conversation_text(r["messages"]) for r in kept]), strict=True))
    near = datacard.near_duplicates(list(hashes), list(hashes.values()),
                                    cfg.near_duplicate_threshold)
    overlaps = datacard.overlap(
        *([(r["id"], datacard.prompt_key(r["messages"]), hashes[r["id"]]) for r in splits[name]]
          for name in ("train", "test")), threshold=cfg.near_duplicate_threshold)
    if cfg.drop_test_overlap and overlaps:
        if len(overlaps) == len(splits["test"]):
            raise InputError(
                f"all {len(overlaps)} test rows of {cfg.dataset} copy a training row (the same "
                "prompt or a near copy): the data repeats itself; deduplicate it, or set "
                "drop_test_overlap=false to evaluate on them anyway"
            )
        splits["test"] = [r for r in splits["test"] if r["id"] not in overlaps]
        rejected.extend({"row": i, "reason": f"overlaps train row {j} ({kind} copy)"}
                        for i, (kind, j) in overlaps.items())
    rejected.sort(key=lambda r: r["row"])
    n_kept = sum(len(v) for v in splits.values())
    selected = wanted or sorted(present)
    test_cats = {r["category"] for r in splits["test"]}
    categories = {name: dict(sorted(Counter(r["category"] for r in rows).items()))
                  for name, rows in splits.items()}
    stats = {
        "source_rows": total,
        "kept_rows": n_kept,
        "rejected_rows": len(rejected),
        "filtered_rows": n_filtered,
        "rejected_by_reason": count_reasons(r["reason"] for r in rejected),
        "split_hash": split_hash(splits),
        "token_lengths": length_stats([r["num_tokens"] for r in kept]),
        **{f"{name}_rows": len(rows) for name, rows in splits.items()},
        "categories": categories,
        "selected_categories": selected,
        # Selected categories the test split has no row of: no per-category verdict for them.
        "categories_without_test_rows": [c for c in selected if c not in test_cats],
        "renamed_categories": dict(renamed),
        "data_format": fmt,
        "dataset_revision": src.revision,
        "near_duplicate_rows": len(near),
        "test_overlap_rows": len(overlaps),
        "test_overlap_dropped": len(overlaps) if cfg.drop_test_overlap else 0,
    }
    by_id = {r["id"]: r for r in kept}
    card = {
        "source": cfg.dataset, "format": fmt, **src.info(),
        "split": cfg.dataset_split if src.kind == "hub" else "",
        "config": cfg.dataset_config if src.kind == "hub" else "",
        "rows_read": total, "rows_by_format": {fmt: total}, "rows_kept": n_kept,
        "dropped": count_reasons(r["reason"] for r in rejected),
        "filtered_by_category": n_filtered,
        "exact_duplicates": stats["rejected_by_reason"].get("duplicate", 0),
        "near_duplicates": {
            "threshold": cfg.near_duplicate_threshold, "rows": len(near),
            "examples": [_pair(by_id[a], by_id[b]) for a, b in near[:8]]},
        "train_test_overlap": {
            "exact": sum(k == "exact" for k, _ in overlaps.values()),
            "near": sum(k == "near" for k, _ in overlaps.values()),
            "dropped": stats["test_overlap_dropped"],
            "examples": [{**_pair(by_id[j], by_id[i]), "kind": k}
                         for i, (k, j) in list(overlaps.items())[:8]]},
        "token_lengths": {
            "max_seq_len": cfg.max_seq_len,
            "histogram": datacard.histogram(list(lengths), cfg.max_seq_len),
            "too_long": len(too_long), "truncated": 0,
            "too_long_share": round(len(too_long) / max(1, len(lengths)), 4)},
        "categories": categories,
    }
    return Prepared(splits, rejected, total, n_filtered, stats, card)


def _pair(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"rows": [a["id"], b["id"]], "prompts": [a["instruction"][:80], b["instruction"][:80]]}


def check_multi_turn_template(tokenizer: Any, source: str) -> None:
    """Multi-turn rows train with TRL's assistant-only loss, which needs the chat template's
    `{% generation %}` markers, or a template TRL knows a training variant of (Gemma 3's)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return
    try:
        patched = get_training_chat_template(tokenizer)
    except Exception:  # TRL raises for a template it has no training variant of
        patched = None
    if patched is None:
        raise InputError(
            f"{source} has multi-turn conversations, and the model's chat template has no "
            "{% generation %} markers (nor one TRL knows a training version of) to put the loss "
            "on every assistant turn; add the markers to chat_template.jinja, or keep one "
            "assistant turn per row"
        )


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
    cfg: DataConfig, *, train: str, validation: str, test: str, rejected: str, data_card: str,
    run_id: str = "", data_key: str = "",
) -> dict[str, PreparedData]:
    """Validate, prepare, then write the four JSONL files and the data card (JSON); returns
    each output's metadata.

    Nothing is written unless the whole preparation succeeded. The metadata holds the stats
    (row counts, categories, token lengths, split hash) and the data config; each file is logged
    to the trackers as a reference artifact, the card also as a table."""
    from components.common.modeling import load_tokenizer, model_source
    from components.common.step import secret_fields, step_run

    out_paths = {"train": train, "validation": validation, "test": test, "rejected": rejected}
    with step_run("prepare-data", cfg, run_id, output_path=train) as step:
        prepared = prepare(cfg, tokenizer_loader=lambda: load_tokenizer(cfg.base_model))
        for name in SPLITS:
            write_jsonl(out_paths[name], prepared.splits[name])
        write_jsonl(rejected, prepared.rejected)
        Path(data_card).parent.mkdir(parents=True, exist_ok=True)
        Path(data_card).write_text(json.dumps(prepared.card, indent=1, ensure_ascii=False),
                                   encoding="utf-8")
        flat = {k: v for k, v in prepared.stats.items() if isinstance(v, int | float | str)}
        step.tracker.summary(flat)
        step.tracker.log_table("data_card", ["measure", "value"], card_rows(prepared.card))
        for name, path in out_paths.items():
            step.tracker.log_reference(f"{name}-split", "dataset", path, {
                "rows": len(prepared.splits.get(name, prepared.rejected)),
                "split_hash": prepared.stats["split_hash"], "source": cfg.dataset})
        step.tracker.log_reference("data-card", "dataset", data_card, {
            "rows": prepared.stats["kept_rows"], "split_hash": prepared.stats["split_hash"],
            "source": cfg.dataset})
        config = {**cfg.model_dump(exclude=set(secret_fields(cfg))),
                  "base_model": model_source(cfg.base_model)}
        # data_key (the data-key step's content key) is in the cache key; kept for the lineage
        stats = {**prepared.stats, "data_key": data_key, "config": config,
                 "wandb_url": step.tracker.url or "",
                 "tracking": step.tracker.report(), "step_seconds": step.seconds()}
    shared = {k: v for k, v in stats.items() if k != "categories"}
    out = {
        name: PreparedData(
            **shared, rows=stats.get(f"{name}_rows", stats["rejected_rows"]),
            categories=stats["categories"].get(name, {}))
        for name in out_paths
    }
    out["data_card"] = PreparedData(**shared, rows=stats["kept_rows"])
    return out


def card_rows(card: dict[str, Any]) -> list[list[Any]]:
    """The card as (measure, value) rows for a tracker table."""
    rows: list[list[Any]] = [
        ["format", card["format"]], ["source", card["source"]],
        ["revision", card.get("revision") or ""], ["rows read", card["rows_read"]],
        ["rows kept", card["rows_kept"]], ["exact duplicates", card["exact_duplicates"]],
        ["near duplicates", card["near_duplicates"]["rows"]],
        ["train/test overlap (exact)", card["train_test_overlap"]["exact"]],
        ["train/test overlap (near)", card["train_test_overlap"]["near"]],
        ["test rows dropped as overlap", card["train_test_overlap"]["dropped"]],
        ["too long (dropped)", card["token_lengths"]["too_long"]],
    ]
    rows += [[f"dropped: {k}", v] for k, v in card["dropped"].items()]
    rows += [[f"rows from {k}", v] for k, v in card["files"].items()]
    rows += [[f"{split}: {c}", n] for split, cats in card["categories"].items()
             for c, n in cats.items()]
    rows += [[f"tokens {b['lo']}-{b['hi']}", b["rows"]] for b in card["token_lengths"]["histogram"]]
    return [[k, str(v)] for k, v in rows]  # one type per column: W&B tables refuse a mix


def main(argv: list[str] | None = None) -> None:
    from components.common.step import main as step_main

    step_main(run_prepare, argv)


if __name__ == "__main__":
    main()
