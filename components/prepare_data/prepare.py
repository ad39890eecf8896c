"""Prepare step: read Dolly-format rows, validate, format as chat, filter, split, write JSONL.

Outputs three splits (train/validation/test) and the rejected rows, each one JSONL file, with the
numbers a person checks first (row counts, per-category counts, token-length stats, a hash of the
split) returned as metadata for the KFP artifacts.

Run it alone:

    uv run python -m components.prepare_data.prepare --dataset embedded://dolly-15k-sample.jsonl \
        --base-model embedded://tiny-gemma3 --out /tmp/prep
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common.config import DataConfig, build
from components.common.errors import InputError
from components.common.paths import resolve_embedded
from components.common.storage import is_gcs, read_bytes
from components.prepare_data.dolly import dedup_key, row_problem, to_messages

SPLITS = ("train", "validation", "test")


@dataclass
class Prepared:
    splits: dict[str, list[dict[str, Any]]]
    rejected: list[dict[str, Any]]
    source_rows: int
    filtered_rows: int
    stats: dict[str, Any] = field(default_factory=dict)


def looks_like_hub_id(source: str) -> bool:
    """`owner/name` with no file extension and no local file of that name."""
    parts = source.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not source.endswith((".json", ".jsonl"))
        and not source.startswith((".", "/", "~"))
        and not Path(source).exists()
    )


def read_jsonl(data: bytes, source: str) -> list[tuple[int, Any]]:
    """(1-based line number, parsed value or a `_ParseError`) for every non-blank line."""
    try:
        text = data.decode("utf-8")
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
        raise InputError(f"cannot load Hugging Face dataset {source!r}: {exc}") from None
    return [(i, dict(r)) for i, r in enumerate(ds, start=1)]


def check_bad_rows(bad: list[dict[str, Any]], total: int, cfg: DataConfig, source: str) -> None:
    if not bad or len(bad) / total <= cfg.max_bad_row_fraction:
        return
    first = "; ".join(f"row {b['row']}: {b['reason']}" for b in bad[:3])
    raise InputError(
        f"{len(bad)} of {total} rows in {source} are malformed ({first}); fix them, or raise "
        f"max_bad_row_fraction above {len(bad) / total:.3f} to skip them"
    )


def split_rows(
    rows: list[dict[str, Any]], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[dict[str, Any]]]:
    """Deterministic shuffle by seed, then test, validation, train. Same seed, same split."""
    order = sorted(rows, key=lambda r: r["id"])
    random.Random(seed).shuffle(order)
    n = len(order)
    n_test = max(1, round(n * test_fraction))
    n_val = round(n * val_fraction) if val_fraction > 0 else 0
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n - n_test - n_val < 1:
        raise InputError(
            f"only {n} rows remain: too few for a train split next to {n_val} validation and "
            f"{n_test} test rows; use more data or smaller fractions"
        )
    return {
        "test": order[:n_test],
        "validation": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }


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


def prepare(cfg: DataConfig, tokenizer: Any) -> Prepared:
    """All of the step's logic, in memory. Raises InputError before writing anything."""
    raw = load_source(cfg.dataset)
    total = len(raw)
    rejected: list[dict[str, Any]] = []
    bad = []
    valid: list[tuple[int, dict[str, str]]] = []
    for n, obj in raw:
        reason = str(obj) if isinstance(obj, _ParseError) else row_problem(obj)
        if reason:
            bad.append({"row": n, "reason": reason})
        else:
            valid.append((n, obj))
    check_bad_rows(bad, total, cfg, cfg.dataset)
    rejected.extend(bad)

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

    convs = [to_messages(r, cfg.system_prompt) for _, r in unique]
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

    splits = split_rows(kept, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    rejected.sort(key=lambda r: r["row"])
    stats = {
        "source_rows": total,
        "kept_rows": len(kept),
        "rejected_rows": len(rejected),
        "filtered_rows": len(valid) - len(filtered),
        "rejected_by_reason": dict(
            Counter(r["reason"].split(" (")[0].split(":")[0] for r in rejected)
        ),
        "split_hash": split_hash(splits),
        "token_lengths": length_stats([r["num_tokens"] for r in kept]),
        **{f"{name}_rows": len(rows) for name, rows in splits.items()},
        "categories": {
            name: dict(sorted(Counter(r["category"] for r in rows).items()))
            for name, rows in splits.items()
        },
    }
    return Prepared(splits, rejected, total, len(valid) - len(filtered), stats)


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run_prepare(
    params: dict[str, Any], out_paths: dict[str, str], run_id: str = "", wandb_project: str = ""
) -> dict[str, Any]:
    """Entry point of the KFP component: validate, prepare, then write all four files.

    `out_paths` maps train/validation/test/rejected to file paths. Nothing is written unless the
    whole preparation succeeded. Returns the stats for the artifacts' metadata (with the data
    config and the W&B run URL); each file is logged to W&B as a reference artifact.
    """
    from components.common.modeling import load_tokenizer, model_source
    from components.common.tracking import tracking_run

    cfg: DataConfig = build(DataConfig, params)
    with tracking_run("prepare-data", cfg.model_dump(), params.get("wandb_project", wandb_project),
                      group=run_id, settings=cfg, output_path=out_paths["train"]) as tracker:
        prepared = prepare(cfg, load_tokenizer(cfg.base_model))
        for name in SPLITS:
            write_jsonl(out_paths[name], prepared.splits[name])
        write_jsonl(out_paths["rejected"], prepared.rejected)
        flat = {k: v for k, v in prepared.stats.items() if isinstance(v, int | float | str)}
        tracker.summary(flat)
        for name, path in out_paths.items():
            tracker.log_reference(f"{name}-split", "dataset", path, {
                "rows": len(prepared.splits.get(name, prepared.rejected)),
                "split_hash": prepared.stats["split_hash"], "source": cfg.dataset})
        config = {**cfg.model_dump(), "base_model": model_source(cfg.base_model)}
        return {**prepared.stats, "config": config, "wandb_url": tracker.url or "",
                "tracking": tracker.report()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare Dolly-format data into chat splits.")
    parser.add_argument("--dataset", default=DataConfig.model_fields["dataset"].default)
    parser.add_argument("--base-model", default=DataConfig.model_fields["base_model"].default)
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    paths = {n: str(args.out / f"{n}.jsonl") for n in (*SPLITS, "rejected")}
    params = {
        "dataset": args.dataset,
        "base_model": args.base_model,
        "max_seq_len": args.max_seq_len,
        "seed": args.seed,
    }
    print(json.dumps(run_prepare(params, paths), indent=2))


if __name__ == "__main__":
    main()
