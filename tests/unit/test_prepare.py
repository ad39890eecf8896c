"""Prepare step: split determinism, filtering, counting, and every bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.common.config import DataConfig, build
from components.common.errors import InputError
from components.prepare_data.prepare import prepare, run_prepare, split_rows
from tests.conftest import write_jsonl


def cfg(path: Path | str, **kw) -> DataConfig:
    return DataConfig(dataset=str(path), base_model="embedded://tiny-gemma3", max_seq_len=512,
                      val_fraction=0.1, test_fraction=0.1, **kw)


def test_embedded_sample_prepares_with_consistent_counts(tokenizer):
    p = prepare(cfg("embedded://dolly-15k-sample.jsonl"), tokenizer)
    s = p.stats
    assert s["source_rows"] == 228
    assert s["train_rows"] + s["validation_rows"] + s["test_rows"] == s["kept_rows"]
    assert s["kept_rows"] + s["rejected_rows"] + s["filtered_rows"] == s["source_rows"]
    assert all(r["num_tokens"] <= 512 for split in p.splits.values() for r in split)
    assert s["token_lengths"]["max"] <= 512
    assert sum(s["categories"]["train"].values()) == s["train_rows"]
    # rows never appear in two splits
    ids = [r["id"] for split in p.splits.values() for r in split]
    assert len(ids) == len(set(ids))


def test_split_is_deterministic_by_seed(tokenizer):
    a = prepare(cfg("embedded://dolly-15k-sample.jsonl", seed=1), tokenizer).stats
    b = prepare(cfg("embedded://dolly-15k-sample.jsonl", seed=1), tokenizer).stats
    c = prepare(cfg("embedded://dolly-15k-sample.jsonl", seed=2), tokenizer).stats
    assert a["split_hash"] == b["split_hash"]
    assert a["split_hash"] != c["split_hash"]


def test_split_rows_sizes():
    rows = [{"id": i} for i in range(100)]
    s = split_rows(rows, 0.1, 0.2, seed=0)
    assert (len(s["train"]), len(s["validation"]), len(s["test"])) == (70, 10, 20)


def test_duplicates_and_long_rows_are_rejected_with_reasons(tmp_path, dolly_rows, tokenizer):
    rows = dolly_rows[:20] + [dolly_rows[3]]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    p = prepare(cfg(path), tokenizer)
    reasons = [r["reason"] for r in p.rejected]
    assert "duplicate of row 4" in reasons
    assert all(r["row"] >= 1 for r in p.rejected)


def test_category_filter_keeps_only_those(tokenizer):
    p = prepare(cfg("embedded://dolly-15k-sample.jsonl", categories="closed_qa,open_qa"),
                tokenizer)
    cats = {r["category"] for split in p.splits.values() for r in split}
    assert cats <= {"closed_qa", "open_qa"}
    assert p.stats["filtered_rows"] > 0


def test_run_prepare_writes_all_four_files(tmp_path):
    outs = {n: str(tmp_path / n) for n in ("train", "validation", "test", "rejected")}
    meta = run_prepare(DataConfig(dataset="embedded://dolly-15k-sample.jsonl",
                                  base_model="embedded://tiny-gemma3", max_seq_len=512,
                                  wandb_project=""), **outs)
    stats = {f"{n}_rows": meta[n]["rows"] for n in outs}
    lines = {n: Path(p).read_text().splitlines() for n, p in outs.items()}
    assert len(lines["train"]) == stats["train_rows"]
    assert len(lines["rejected"]) == stats["rejected_rows"]
    first = json.loads(lines["train"][0])
    assert first["messages"][-1]["role"] == "assistant"


# ---- bad input: one clear error, nothing written -------------------------------------------

def _error(tmp_path, tokenizer, path, **kw) -> str:
    outs = {n: str(tmp_path / "out" / n) for n in ("train", "validation", "test", "rejected")}
    with pytest.raises(InputError) as exc:
        run_prepare(build(DataConfig, {"dataset": str(path), "base_model": "embedded://tiny-gemma3",
                                       "max_seq_len": kw.pop("max_seq_len", 512),
                                       "wandb_project": "", **kw}), **outs)
    assert not (tmp_path / "out").exists(), "a failed prepare must leave no partial outputs"
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_path(tmp_path, tokenizer):
    assert "does not exist" in _error(tmp_path, tokenizer, tmp_path / "nope.jsonl")


def test_not_jsonl(tmp_path, tokenizer):
    p = tmp_path / "x.jsonl"
    p.write_text("instruction,context\nfoo,bar\n")
    assert "not JSONL" in _error(tmp_path, tokenizer, p)


def test_json_array(tmp_path, tokenizer, dolly_rows):
    p = tmp_path / "x.json"
    p.write_text(json.dumps(dolly_rows[:3]))
    assert "JSON array, not JSONL" in _error(tmp_path, tokenizer, p)


def test_bad_rows_above_fraction_list_first_rows(tmp_path, tokenizer, dolly_rows):
    rows = dolly_rows[:20]
    rows[2] = {**rows[2], "response": 5}
    rows[5] = {k: v for k, v in rows[5].items() if k != "category"}
    msg = _error(tmp_path, tokenizer, write_jsonl(tmp_path / "d.jsonl", rows))
    assert "2 of 20 rows" in msg and "row 3: non-string response" in msg and "row 6" in msg
    assert "max_bad_row_fraction" in msg


def test_bad_rows_below_fraction_are_skipped_and_counted(tmp_path, tokenizer, dolly_rows):
    rows = dolly_rows[:20]
    rows[2] = {**rows[2], "response": 5}
    p = prepare(cfg(write_jsonl(tmp_path / "d.jsonl", rows), max_bad_row_fraction=0.1),
                tokenizer)
    assert {"row": 3, "reason": "non-string response (int)"} in p.rejected


def test_nothing_left_after_max_seq_len(tmp_path, tokenizer):
    msg = _error(tmp_path, tokenizer, "embedded://dolly-15k-sample.jsonl", max_seq_len=16)
    assert "longer than max_seq_len=16" in msg and "raise max_seq_len" in msg


def test_category_not_in_data(tmp_path, tokenizer, dolly_rows):
    rows = [r for r in dolly_rows if r["category"] == "open_qa"][:10]
    msg = _error(tmp_path, tokenizer, write_jsonl(tmp_path / "d.jsonl", rows),
                 categories="closed_qa")
    assert "match no rows" in msg and "open_qa (10)" in msg


def test_unknown_category_and_fractions_fail_validation(tmp_path, tokenizer):
    assert "unknown category bogus" in _error(
        tmp_path, tokenizer, "embedded://dolly-15k-sample.jsonl", categories="bogus")
    assert "leaves nothing to train on" in _error(
        tmp_path, tokenizer, "embedded://dolly-15k-sample.jsonl", val_fraction=0.5,
        test_fraction=0.5)
