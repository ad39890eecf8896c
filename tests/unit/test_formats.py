"""Instruction data as people have it: each format, each file type and place, open categories,
the data card's duplicates and train/test overlap, and each bad input in one line."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common.config import DataConfig
from components.common.errors import InputError
from components.common.formats import NO_CATEGORY
from components.common.jsonl import load_prompts
from components.prepare_data.prepare import prepare
from tests.conftest import write_jsonl


def cfg(path: Path | str, **kw: Any) -> DataConfig:
    return DataConfig(**{"dataset": str(path), "base_model": "embedded://tiny-gemma3",
                         "max_seq_len": 512, "val_fraction": 0.1, "test_fraction": 0.1, **kw})


def as_format(r: dict[str, str], fmt: str, i: int) -> dict[str, Any]:
    """One Dolly row in another format, saying the same thing."""
    user = r["instruction"] + (f"\n\nContext:\n{r['context']}" if r["context"].strip() else "")
    if fmt == "instruction_response":
        return {"instruction": r["instruction"], "response": r["response"]}
    if fmt == "alpaca":
        return {"instruction": r["instruction"], "input": r["context"], "output": r["response"]}
    if fmt == "prompt_completion":
        return {"prompt": user, "completion": r["response"]}
    if fmt == "prompt_completion_chat":
        return {"prompt": [{"role": "user", "content": user}],
                "completion": [{"role": "assistant", "content": r["response"]}]}
    if fmt == "messages":  # every third row a two-exchange conversation with a system turn
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": r["response"]}]
        if i % 3 == 0:
            msgs = [{"role": "system", "content": "Be brief."}, *msgs,
                    {"role": "user", "content": "Say it in one word."},
                    {"role": "assistant", "content": r["response"].split()[0]}]
        return {"messages": msgs, "category": r["category"]}
    raise AssertionError(fmt)


DETECTED = {"instruction_response": "dolly", "alpaca": "alpaca", "messages": "messages",
            "prompt_completion": "prompt_completion", "prompt_completion_chat": "prompt_completion"}


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    """`rows` in the file type `path`'s name says."""
    name = path.name
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif name.endswith(".csv"):
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif name.endswith(".jsonl.gz"):
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    elif name.endswith(".json"):
        path.write_text(json.dumps(rows, indent=1))
    else:
        write_jsonl(path, rows)
    return path


@pytest.mark.parametrize("fmt", list(DETECTED))
def test_each_format_is_detected_said_and_trains_the_same_rows(tmp_path, dolly_rows, tokenizer,
                                                                fmt):
    rows = [as_format(r, fmt, i) for i, r in enumerate(dolly_rows[:60])]
    p = prepare(cfg(write_jsonl(tmp_path / "d.jsonl", rows)), tokenizer)
    assert p.stats["data_format"] == DETECTED[fmt] == p.card["format"]
    kept = [r for s in p.splits.values() for r in s]
    assert all(r["messages"][-1]["role"] == "assistant" for r in kept)
    by_id = {r["id"]: r for r in kept}
    for i, src in enumerate(dolly_rows[:60], start=1):
        if i in by_id:  # the answer evaluation scores is the row's last answer
            assert by_id[i]["response"] == (src["response"].split()[0] if fmt == "messages"
                                            and (i - 1) % 3 == 0 else src["response"].strip())
    if fmt == "messages":
        assert {r["category"] for r in kept} <= {r["category"] for r in dolly_rows}
        assert any(len(r["messages"]) == 5 for r in kept)
    elif fmt != "alpaca":  # no category field: one group
        assert set(p.stats["categories"]["train"]) == {NO_CATEGORY}


@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.json", "d.parquet", "d.csv", "shards",
                                  "shards/*.parquet"])
def test_every_file_type_reads_the_rows_jsonl_holds(tmp_path, dolly_rows, tokenizer, name):
    rows = [as_format(r, "alpaca", i) for i, r in enumerate(dolly_rows[:50])]
    want = prepare(cfg(write_jsonl(tmp_path / "d.jsonl", rows)), tokenizer)
    if name.startswith("shards"):
        (tmp_path / "shards").mkdir()
        write(tmp_path / "shards" / "part-0.parquet", rows[:20])
        write(tmp_path / "shards" / "part-1.parquet", rows[20:])
    else:
        write(tmp_path / name, rows)
    got = prepare(cfg(tmp_path / name), tokenizer)
    assert got.stats["split_hash"] == want.stats["split_hash"]
    assert got.splits["train"] == want.splits["train"]
    assert sum(got.card["files"].values()) == 50
    if name.startswith("shards"):
        assert list(got.card["files"].values()) == [20, 30]


def test_columns_rename_fields_and_data_format_forces_one(tmp_path, dolly_rows, tokenizer):
    rows = [{"question": r["instruction"], "answer": r["response"]} for r in dolly_rows[:40]]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    p = prepare(cfg(path, columns="instruction:question,response:answer"), tokenizer)
    assert p.stats["data_format"] == "dolly" and p.stats["kept_rows"] > 30
    msg = _refused(cfg(path, columns="instruction:query,response:answer"))
    assert "columns=instruction:query,response:answer" in msg and "no column 'query'" in msg
    assert "answer, question" in msg
    # a `messages` field the user does not mean: forced to Alpaca, it reads as Alpaca
    alp = [{**as_format(r, "alpaca", i), "messages": "log"} for i, r in enumerate(dolly_rows[:40])]
    forced = prepare(cfg(write_jsonl(tmp_path / "a.jsonl", alp), data_format="alpaca"), tokenizer)
    assert forced.stats["data_format"] == "alpaca"


def test_open_categories_outside_dolly_files(tmp_path, dolly_rows, tokenizer):
    rows = [{**as_format(r, "alpaca", i), **({"category": ["poetry", "Tax Law"][i % 2]}
                                               if i % 3 else {})}
            for i, r in enumerate(dolly_rows[:90])]
    p = prepare(cfg(write_jsonl(tmp_path / "d.jsonl", rows)), tokenizer)
    assert set(p.stats["categories"]["train"]) == {"poetry", "Tax Law", NO_CATEGORY}
    assert set(p.stats["categories"]["test"]) == {"poetry", "Tax Law", NO_CATEGORY}  # stratified
    only = prepare(cfg(tmp_path / "d.jsonl", categories="Tax Law"), tokenizer)
    assert set(only.stats["categories"]["train"]) == {"Tax Law"}
    # a Dolly file still refuses names Dolly does not have
    dolly = [{**r, "category": "poetry"} if i < 10 else r for i, r in enumerate(dolly_rows[:40])]
    assert "'poetry' (10)" in _refused(cfg(write_jsonl(tmp_path / "dolly.jsonl", dolly)))


def test_data_card_counts_planted_duplicates_and_train_test_overlap(tmp_path, dolly_rows,
                                                                    tokenizer):
    rows = [dict(r) for r in dolly_rows[:120]]
    rows += [dict(rows[5]), dict(rows[6])]  # 2 exact duplicates
    near = []
    for i in range(40, 70):  # 30 near copies: one word of the answer changed
        words = rows[i]["response"].split()
        near.append({**rows[i], "response": " ".join([*words[:-1], "indeed."])})
    rows += near
    path = write_jsonl(tmp_path / "planted.jsonl", rows)
    kept = prepare(cfg(path, drop_test_overlap=False, test_fraction=0.3), tokenizer)
    p = prepare(cfg(path, test_fraction=0.3), tokenizer)
    card = p.card
    assert card["exact_duplicates"] == 2
    long_words = {i for i in range(40, 70) if len(rows[i]["response"].split()) >= 12}
    assert card["near_duplicates"]["rows"] >= len(long_words) - 2  # MinHash is an estimate
    over = card["train_test_overlap"]
    assert over["exact"] + over["near"] > 0 and over["dropped"] == over["exact"] + over["near"]
    # a near copy shares its prompt: every planted pair split across train and test is found
    train_ids = {r["id"] for r in kept.splits["train"]}
    test_ids = {r["id"] for r in kept.splits["test"]}
    split_pairs = sum(((i + 1) in train_ids and (j + 1) in test_ids) or
                      ((j + 1) in train_ids and (i + 1) in test_ids)
                      for i, j in zip(range(40, 70), range(122, 152), strict=True))
    assert kept.card["train_test_overlap"]["exact"] >= split_pairs > 0
    assert kept.card["train_test_overlap"]["dropped"] == 0
    assert len(p.splits["test"]) == len(kept.splits["test"]) - over["dropped"]
    assert p.stats["test_overlap_dropped"] == over["dropped"]
    assert sum(r["reason"].startswith("overlaps train row") for r in p.rejected) == over["dropped"]
    assert card["dropped"]["overlaps train"] == over["dropped"]
    hist = card["token_lengths"]["histogram"]
    assert hist[-1]["lo"] == 513 and hist[-1]["rows"] == card["token_lengths"]["too_long"]


def test_a_hub_id_without_network_says_it_needs_one(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = _refused(cfg("someone/instructions", dataset_revision="v1"))
    assert "needs network access to the hub" in msg and "dataset_revision" in msg


# ---- bad input: one line, naming the file, the row and the fix -----------------------------

def _refused(c: DataConfig) -> str:
    def no_tokenizer() -> Any:
        raise AssertionError("a bad file must be refused before the tokenizer loads")

    with pytest.raises(InputError) as exc:
        prepare(c, tokenizer_loader=no_tokenizer)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_mixed_formats_are_refused_with_the_first_row_of_each(tmp_path, dolly_rows):
    rows = [as_format(r, "alpaca", i) for i, r in enumerate(dolly_rows[:10])]
    rows.insert(4, as_format(dolly_rows[20], "messages", 1))
    msg = _refused(cfg(write_jsonl(tmp_path / "mixed.jsonl", rows)))
    assert "mixed.jsonl mixes formats: alpaca (row 1: {" in msg
    assert "messages (row 5: {\"messages\"" in msg and "data_format=" in msg


@pytest.mark.parametrize(("messages", "expected"), [
    ([{"role": "user", "content": "hi"}], "no assistant turn"),
    ([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}],
     "roles out of order (assistant, user): turn 1 is 'assistant', expected 'user'"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
      {"role": "assistant", "content": "c"}], "turn 2 is 'user', expected 'assistant'"),
])
def test_bad_conversations_are_named(tmp_path, messages, expected):
    rows = [{"messages": messages}] * 10
    msg = _refused(cfg(write_jsonl(tmp_path / "chat.jsonl", rows)))
    assert "none of the 10 rows in" in msg and "rows 1, 2, 3: " in msg and expected in msg


def test_parquet_without_the_needed_columns(tmp_path):
    write(tmp_path / "d.parquet", [{"question": "q", "answer": "a"}] * 5)
    msg = _refused(cfg(tmp_path / "d.parquet"))
    assert "d.parquet: no row is in a known format (row 1 has answer, question)" in msg
    assert "columns=" in msg


def test_empty_inputs(tmp_path):
    pq.write_table(pa.table({"instruction": pa.array([], pa.string())}), tmp_path / "e.parquet")
    assert "holds no rows" in _refused(cfg(tmp_path / "e.parquet"))
    assert "matches no data file" in _refused(cfg(tmp_path / "none-*.jsonl"))
    rows = [{"q": "x", "response": ""}] * 5  # after the mapping, every response is empty
    msg = _refused(cfg(write_jsonl(tmp_path / "m.jsonl", rows), columns="instruction:q"))
    assert "none of the 5 rows" in msg and "empty response" in msg


def test_multi_turn_needs_a_template_that_can_mask_turns(tmp_path, dolly_rows, tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = ("{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
                         "{{ m['content'] }}<end_of_turn>\n{% endfor %}")
    rows = [as_format(r, "messages", i) for i, r in enumerate(dolly_rows[:30])]
    with pytest.raises(InputError, match="no \\{% generation %\\} markers"):
        prepare(cfg(write_jsonl(tmp_path / "chat.jsonl", rows)), tok)


# ---- inference prompts in the same shapes ---------------------------------------------------

def test_prompts_in_every_shape(tmp_path):
    lines = [{"prompt": "Name a colour."},
             {"instruction": "Summarise.", "context": "A long text."},
             {"instruction": "Translate.", "input": "Bonjour"},
             {"messages": [{"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Hello!"},
                           {"role": "user", "content": "And now?"}]}]
    prompts = load_prompts(str(write_jsonl(tmp_path / "p.jsonl", lines)), [])
    assert prompts[0] == "Name a colour."
    assert prompts[1] == [{"role": "user", "content": "Summarise.\n\nContext:\nA long text."}]
    assert prompts[2][0]["content"] == "Translate.\n\nContext:\nBonjour"
    assert [m["role"] for m in prompts[3]] == ["user", "assistant", "user"]
    bad = write_jsonl(tmp_path / "bad.jsonl", [lines[0], {"messages": lines[3]["messages"][:2]}])
    with pytest.raises(InputError, match="bad.jsonl line 2 does not end on a user turn"):
        load_prompts(str(bad), [])


def test_the_card_is_an_artifact_a_wandb_table_and_report_sentences(tmp_path, monkeypatch,
                                                                   dolly_rows):
    import wandb

    from components.prepare_data.prepare import run_prepare
    from components.report.report import card_lines
    from tests.wandb_reader import read_runs

    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR",
                "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("DOLLY_LORA_TRACKING_DIR", str(tmp_path))
    rows = [*dolly_rows[:80], dolly_rows[3]]
    outs = {n: str(tmp_path / "out" / n) for n in ("train", "validation", "test", "rejected",
                                                    "data_card")}
    meta = run_prepare(cfg(write_jsonl(tmp_path / "d.jsonl", rows), trackers="wandb"), **outs)
    wandb.teardown()
    card = json.loads(Path(outs["data_card"]).read_text())
    assert meta["data_card"].rows == card["rows_kept"] and card["exact_duplicates"] == 1
    [run] = read_runs(tmp_path / "wandb")
    [logged] = [row for row in run.history if "data_card.nrows" in row]
    assert logged["data_card._type"] == "table-file" and logged["data_card.nrows"] > 20
    table = next(p for p in (tmp_path / "wandb").rglob("data_card*.table.json"))
    data = dict(json.loads(table.read_text())["data"])
    assert data["exact duplicates"] == "1" and data["format"] == "dolly"
    lines = card_lines(card)
    assert lines[0].startswith(f"Format dolly, 81 rows read from {tmp_path / 'd.jsonl'}")
    assert "Exact duplicates: 1;" in lines[2]


def test_gcs_shards_and_a_gcs_parquet_read_like_local_files(gcs, tmp_path, dolly_rows,
                                                            tokenizer):
    """gs:// through the project's GCS client (fake-gcs-server): a glob of shards and one
    Parquet file."""
    from components.common import storage

    rows = [as_format(r, "alpaca", i) for i, r in enumerate(dolly_rows[:50])]
    want = prepare(cfg(write_jsonl(tmp_path / "d.jsonl", rows)), tokenizer).stats["split_hash"]
    storage.upload_bytes("".join(json.dumps(r) + "\n" for r in rows[:25]).encode(),
                         "gs://ckpt/data/part-0.jsonl")
    storage.upload_bytes("".join(json.dumps(r) + "\n" for r in rows[25:]).encode(),
                         "gs://ckpt/data/part-1.jsonl")
    storage.upload_bytes(b"not data", "gs://ckpt/data/README.txt")
    write(tmp_path / "d.parquet", rows)
    storage.upload_file(tmp_path / "d.parquet", "gs://ckpt/one/d.parquet")
    shards = prepare(cfg("gs://ckpt/data/part-*.jsonl"), tokenizer)
    assert shards.stats["split_hash"] == want
    assert shards.card["files"] == {"gs://ckpt/data/part-0.jsonl": 25,
                                    "gs://ckpt/data/part-1.jsonl": 25}
    assert prepare(cfg("gs://ckpt/data/"), tokenizer).stats["split_hash"] == want  # a folder
    assert prepare(cfg("gs://ckpt/one/d.parquet"), tokenizer).stats["split_hash"] == want
