"""A person's own data through the whole DAG: a Parquet file of multi-turn chat conversations
with planted duplicates and near copies, and prompts in three shapes. One `submit --local`
(shortened); the other formats and file types go through the prepare step in
tests/unit/test_formats.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common.paths import EMBEDDED_DATASET
from tests.unit.test_formats import as_format

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a whole run, ~2 min on 2 idle cores


def test_multi_turn_parquet_with_planted_copies_reaches_the_summary(tmp_path):
    dolly = [json.loads(line) for line in EMBEDDED_DATASET.read_text().splitlines()]
    rows = [as_format(r, "messages", i) for i, r in enumerate(dolly)]
    rows += [rows[10], rows[11], rows[12]]  # 3 exact duplicates
    for r in rows[100:130]:  # 30 near copies: the last answer's final word changed
        last = r["messages"][-1]["content"].split()
        msgs = [*r["messages"][:-1], {"role": "assistant",
                                      "content": " ".join([*last[:-1], "indeed."])}]
        rows.append({**r, "messages": msgs})
    data = tmp_path / "chats.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(p) for p in [
        {"instruction": "Summarise.", "context": "LoRA trains small matrices."},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hi!"},
                      {"role": "user", "content": "Name a colour."}]},
        {"prompt": "What is 2 + 2?"}]) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "cli.submit", "--local", "--output-dir", str(tmp_path / "runs"),
         "--run-id", "own", "-p", f"dataset={data}", "-p", f"prompts_uri={prompts}",
         "-p", "max_steps=8", "-p", "max_new_tokens=8", "-p", "eval_max_rows=12",
         "-p", "test_fraction=0.15", "-p", "trackers="],
        capture_output=True, text=True, timeout=1200, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert f"format: messages, {len(rows)} rows" in proc.stdout + proc.stderr
    summary = json.loads(Path(proc.stdout.strip().splitlines()[-1]).read_text())
    assert summary["status"] == "SUCCESS" and summary["data_format"] == "messages"
    card = json.loads(Path(summary["report"]["data_card"]).read_text())
    assert card["exact_duplicates"] == 3 and card["near_duplicates"]["rows"] >= 15
    over = card["train_test_overlap"]
    assert over["dropped"] == over["exact"] + over["near"] > 0
    assert summary["test_rows"] == sum(card["categories"]["test"].values())
    md = Path(summary["report"]["markdown"]).read_text()
    assert f"{over['dropped']} dropped from the test split" in md and "Format messages" in md
    assert "id=\"data-card\"" in Path(summary["report"]["html"]).read_text()
    preds_dir = Path(summary["artifacts"]["inference.predictions"])
    preds = [json.loads(line) for f in sorted(preds_dir.rglob("*.jsonl"))
             for line in f.read_text().splitlines()]
    assert [p["prompt"] for p in preds] == ["Summarise.\n\nContext:\nLoRA trains small matrices.",
                                            "Name a colour.", "What is 2 + 2?"]
    assert [m["role"] for m in preds[1]["messages"]] == ["user", "assistant", "user"]
