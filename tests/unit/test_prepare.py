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


def test_run_prepare_writes_all_four_files_and_the_card(tmp_path):
    outs = {n: str(tmp_path / n) for n in ("train", "validation", "test", "rejected")}
    meta = run_prepare(DataConfig(dataset="embedded://dolly-15k-sample.jsonl",
                                  base_model="embedded://tiny-gemma3", max_seq_len=512,
                                  wandb_project=""), **outs, data_card=str(tmp_path / "card"))
    card = json.loads((tmp_path / "card").read_text())
    assert card["format"] == "dolly" and card["rows_read"] == 228
    assert card["rows_kept"] == meta["data_card"].rows == sum(
        meta[n].rows for n in ("train", "validation", "test"))
    assert sum(b["rows"] for b in card["token_lengths"]["histogram"]) == 228 - card[
        "exact_duplicates"]
    stats = {f"{n}_rows": meta[n].rows for n in outs}
    lines = {n: Path(p).read_text().splitlines() for n, p in outs.items()}
    assert len(lines["train"]) == stats["train_rows"]
    assert len(lines["rejected"]) == stats["rejected_rows"]
    first = json.loads(lines["train"][0])
    assert first["messages"][-1]["role"] == "assistant"


# ---- bad input: one clear error, nothing written -------------------------------------------

def _error(tmp_path, tokenizer, path, **kw) -> str:
    outs = {n: str(tmp_path / "out" / n) for n in ("train", "validation", "test", "rejected",
                                                    "data_card")}
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


def test_json_array_reads_like_jsonl(tmp_path, tokenizer, dolly_rows):
    p = tmp_path / "x.json"
    p.write_text(json.dumps(dolly_rows[:30], indent=2))
    jsonl = write_jsonl(tmp_path / "x.jsonl", dolly_rows[:30])
    assert prepare(cfg(p), tokenizer).stats["split_hash"] == prepare(
        cfg(jsonl), tokenizer).stats["split_hash"]


def test_bad_rows_above_fraction_list_first_rows(tmp_path, tokenizer, dolly_rows):
    rows = dolly_rows[:20]
    rows[2] = {**rows[2], "response": 5}
    rows[5] = {k: v for k, v in rows[5].items() if k != "instruction"}
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
    assert "category bogus match no rows; the data has brainstorming (" in _error(
        tmp_path, tokenizer, "embedded://dolly-15k-sample.jsonl", categories="bogus")
    assert "leaves nothing to train on" in _error(
        tmp_path, tokenizer, "embedded://dolly-15k-sample.jsonl", val_fraction=0.5,
        test_fraction=0.5)


# ---- stratified split, encodings, categories, fast refusal ----------------------------------

def test_split_is_stratified_per_category_and_deterministic():
    """Each category holds its share of test and validation rows (within one row), the split
    is the same for the same seed and rows, and different for another seed."""
    from collections import Counter

    sizes = {"closed_qa": 26, "open_qa": 60, "summarization": 9, "classification": 31}
    rows = [{"id": i, "category": c} for i, c in enumerate(c for c, n in sizes.items()
                                                           for _ in range(n))]
    a = split_rows(rows, 0.1, 0.2, seed=5)
    n = len(rows)
    assert len(a["test"]) == round(n * 0.2) and len(a["validation"]) == round(n * 0.1)
    test = Counter(r["category"] for r in a["test"])
    val = Counter(r["category"] for r in a["validation"])
    n_test, n_val = len(a["test"]), len(a["validation"])
    for cat, k in sizes.items():  # largest-remainder shares: within one row of the exact share
        assert abs(test[cat] - k * n_test / n) < 1, (cat, test[cat])
        assert abs(val[cat] - (k - test[cat]) * n_val / (n - n_test)) < 1, (cat, val[cat])
    assert split_rows(list(reversed(rows)), 0.1, 0.2, seed=5) == a  # order of input irrelevant
    b = split_rows(rows, 0.1, 0.2, seed=6)
    assert {r["id"] for r in b["test"]} != {r["id"] for r in a["test"]}


def test_selected_categories_all_reach_the_test_split(tokenizer):
    p = prepare(cfg("embedded://dolly-15k-sample.jsonl", categories="closed_qa,open_qa"),
                tokenizer)
    assert set(p.stats["categories"]["test"]) == {"closed_qa", "open_qa"}
    assert p.stats["categories_without_test_rows"] == []


def test_a_selected_category_without_test_rows_is_named(tmp_path, dolly_rows, tokenizer):
    rows = [r for r in dolly_rows if r["category"] == "open_qa"][:40]
    rows.append(next(r for r in dolly_rows if r["category"] == "closed_qa"))
    p = prepare(cfg(write_jsonl(tmp_path / "d.jsonl", rows)), tokenizer)
    assert p.stats["categories_without_test_rows"] == ["closed_qa"]


def test_bom_and_crlf_files_read_like_plain_ones(tmp_path, dolly_rows, tokenizer):
    plain = write_jsonl(tmp_path / "plain.jsonl", dolly_rows[:30])
    text = plain.read_text()
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    a = prepare(cfg(plain), tokenizer).stats
    b = prepare(cfg(tmp_path / "bom.jsonl"), tokenizer).stats
    assert a["split_hash"] == b["split_hash"] and b["rejected_rows"] == a["rejected_rows"]


def test_mis_cased_categories_count_as_dollys(tmp_path, dolly_rows, tokenizer):
    rows = [{**r, "category": "Closed_QA"} if r["category"] == "closed_qa" else r
            for r in dolly_rows[:60]]
    p = prepare(cfg(write_jsonl(tmp_path / "d.jsonl", rows)), tokenizer)
    n = sum(r["category"] == "Closed_QA" for r in rows)
    assert p.stats["renamed_categories"] == {"Closed_QA -> closed_qa": n}
    assert all(r["category"] != "Closed_QA" for s in p.splits.values() for r in s)
    kept_ids = {r["id"] for s in p.splits.values() for r in s if r["category"] == "closed_qa"}
    mis_cased_ids = {i for i, r in enumerate(rows, start=1) if r["category"] == "Closed_QA"}
    assert kept_ids and kept_ids <= mis_cased_ids  # every kept one counts as closed_qa


def test_unknown_categories_are_bad_rows_named_with_the_fix(tmp_path, dolly_rows, tokenizer):
    rows = [{**r, "category": "poetry"} if i < 5 else r for i, r in enumerate(dolly_rows[:20])]
    msg = _error(tmp_path, tokenizer, write_jsonl(tmp_path / "d.jsonl", rows))
    assert "'poetry' (5)" in msg and "rename them to one of" in msg and "closed_qa" in msg


def test_all_bad_rows_never_suggest_a_fraction_above_one(tmp_path, tokenizer):
    msg = _error(tmp_path, tokenizer, write_jsonl(tmp_path / "d.jsonl",
                                                  [{"instruction": "q", "response": 1}] * 5))
    assert "none of the 5 rows" in msg and "max_bad_row_fraction" not in msg
    assert "non-string response (int)" in msg


def test_rows_in_no_known_format_list_the_formats(tmp_path, tokenizer):
    msg = _error(tmp_path, tokenizer, write_jsonl(tmp_path / "d.jsonl", [{"q": 1}] * 5))
    assert "no row is in a known format (row 1 has q)" in msg
    for fmt in ("messages", "prompt_completion", "alpaca", "dolly"):
        assert fmt in msg


def test_a_file_of_duplicates_says_duplicates(tmp_path, dolly_rows, tokenizer):
    msg = _error(tmp_path, tokenizer, write_jsonl(tmp_path / "d.jsonl", [dolly_rows[0]] * 6))
    assert "only 1 distinct usable row" in msg and "5 exact duplicates" in msg


def test_rejected_reasons_are_counted_one_way(tmp_path, dolly_rows, tokenizer):
    """Metadata and report count reasons with one function: 'duplicate', not 'duplicate of
    row 4' and 'duplicate of row 9' as two reasons."""
    rows = [*dolly_rows[:30], dolly_rows[3], dolly_rows[8], {"instruction": "x"}]
    p = prepare(cfg(write_jsonl(tmp_path / "d.jsonl", rows), max_bad_row_fraction=0.1),
                tokenizer)
    assert p.stats["rejected_by_reason"]["duplicate"] == 2
    assert p.stats["rejected_by_reason"]["missing field"] == 1


def test_a_bad_file_is_refused_before_the_tokenizer_loads(tmp_path):
    def no_tokenizer():
        raise AssertionError("the tokenizer was loaded for a file that is not Dolly data")

    bad = tmp_path / "x.jsonl"
    bad.write_text("instruction,context\nfoo,bar\n")
    with pytest.raises(InputError, match="not JSONL"):
        prepare(cfg(bad), tokenizer_loader=no_tokenizer)
    dups = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "a", "context": "", "response": "b",
                                               "category": "open_qa"}] * 4)
    with pytest.raises(InputError, match="exact duplicates"):
        prepare(cfg(dups), tokenizer_loader=no_tokenizer)


def test_a_missing_local_path_without_extension_names_both_readings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as exc:
        prepare(cfg("data/mydolly"), tokenizer_loader=lambda: None)
    msg = str(exc.value)
    assert "'data/mydolly' is not a file here" in msg and "Hugging Face dataset id" in msg
    assert "\n" not in msg
