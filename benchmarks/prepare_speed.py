"""Time of the prepare step's logic on a Dolly-sized file with a 262,144-entry tokenizer.

The file: the shipped 228-row sample repeated to 15,011 rows (Dolly-15k's count), each copy's
instruction suffixed "(copy k)" so that no row is an exact duplicate and every row has ~65 near
duplicates: the worst case for the MinHash search, which runs in full. The test split then
overlaps the training split almost entirely, so the run keeps those rows
(drop_test_overlap=false) instead of refusing; the overlap search itself runs either way.

The tokenizer: the embedded BPE padded to Gemma 3's 262,144 ids with its chat template
(`scripts/make_real_size_model.padded_tokenizer`, what the real-size memory tests use): the
real vocabulary's size (its file, its loading), but the tiny model's 2k merges, so rows come out
longer in tokens than Gemma's own tokenizer makes them (more work, not less).

    uv run python benchmarks/prepare_speed.py              # 2 rounds, ~1 minute
    uv run python benchmarks/prepare_speed.py --rounds 1 --rows 5000

Prints one JSON object per round and a last line `seconds_per_10k_rows=<best round>`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOCAB = 262_144
ROWS = 15_011


def make_file(path: Path, rows: int) -> Path:
    from components.common.paths import EMBEDDED_DATASET

    sample = [json.loads(line) for line in EMBEDDED_DATASET.read_text().splitlines()]
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            r = sample[i % len(sample)]
            copy = i // len(sample)
            f.write(json.dumps({**r, "instruction": f"{r['instruction']} (copy {copy})"}) + "\n")
    return path


def make_tokenizer(out: Path) -> Path:
    from scripts.make_real_size_model import padded_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    padded_tokenizer(out, VOCAB)
    return out


def timed(stages: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            stages[name] += time.perf_counter() - t0
    return wrapper


def one_round(data: Path, tok_dir: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from components.common import datacard
    from components.common.config import DataConfig
    from components.prepare_data import prepare as prep

    stages: dict[str, float] = defaultdict(float)
    originals = {"token_lengths": prep.token_lengths, "read_examples": prep.read_examples,
                 "minhashes": datacard.minhashes, "near_duplicates": datacard.near_duplicates,
                 "overlap": datacard.overlap}
    prep.token_lengths = timed(stages, "tokenize", originals["token_lengths"])
    prep.read_examples = timed(stages, "read_and_validate", originals["read_examples"])
    for name in ("minhashes", "near_duplicates", "overlap"):
        setattr(datacard, name, timed(stages, name, originals[name]))

    def load() -> Any:
        t0 = time.perf_counter()
        tok = AutoTokenizer.from_pretrained(tok_dir)
        stages["load_tokenizer"] += time.perf_counter() - t0
        assert len(tok) == VOCAB, len(tok)
        return tok

    cfg = DataConfig(dataset=str(data), base_model=str(tok_dir), max_seq_len=1024,
                     drop_test_overlap=False)
    try:
        t0 = time.perf_counter()
        p = prep.prepare(cfg, tokenizer_loader=load)
        total = time.perf_counter() - t0
    finally:
        prep.token_lengths, prep.read_examples = (originals["token_lengths"],
                                                  originals["read_examples"])
        for name in ("minhashes", "near_duplicates", "overlap"):
            setattr(datacard, name, originals[name])
    rows = p.stats["source_rows"]
    return {
        "rows": rows, "kept": p.stats["kept_rows"], "seconds": round(total, 2),
        "seconds_per_10k_rows": round(total * 10_000 / rows, 2),
        "stages": {k: round(v, 2) for k, v in stages.items()},
        "near_duplicate_rows": p.card["near_duplicates"]["rows"],
        "test_overlap_rows": p.stats["test_overlap_rows"],
        "tokens_per_row_mean": p.stats["token_lengths"]["mean"], "vocabulary": VOCAB,
    }


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=ROWS)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        data = make_file(Path(d) / "dolly-15011.jsonl", args.rows)
        tok_dir = make_tokenizer(Path(d) / "tokenizer-262k")
        results = [one_round(data, tok_dir) for _ in range(args.rounds)]
    for r in results:
        print(json.dumps(r))
    best = min(r["seconds_per_10k_rows"] for r in results)
    print(f"seconds_per_10k_rows={best}")
    return best


if __name__ == "__main__":
    main()
