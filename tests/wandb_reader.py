"""Read back an offline W&B run (`run-*.wandb`) so tests can check what a step logged.

Why: wandb 0.31 ships no reader. The file is a LevelDB-style log: a 7-byte file header
(`:W&B`, magic 0xBEE1, version), then 32 KiB blocks of chunks, each with a 7-byte header
(CRC32, length, type FULL/FIRST/MIDDLE/LAST); joined chunks are serialized
`wandb_internal_pb2.Record`s. Call `wandb.teardown()` after `finish()` before reading, or the
file may still be empty.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_records(path: Path) -> list[Any]:
    """Every Record in the file, in order; raises ValueError on a corrupt file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B run file (header {ident!r} {magic:#x} v{version})")
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer: zero padding
            pos += left_in_block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if length == 0 and kind == 0:  # zero padding to the end of the block / file
            pos += left_in_block
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            raise ValueError(f"{path}: bad checksum at byte {pos}")
        pos += HEADER + length
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            pending += chunk
        else:
            raise ValueError(f"{path}: unknown chunk type {kind} at byte {pos}")
        rec = pb.Record()
        rec.ParseFromString(pending)
        records.append(rec)
        pending = b""
    return records


def _item_value(item: Any) -> Any:
    key = ".".join(item.nested_key) if item.nested_key else item.key
    return key, json.loads(item.value_json) if item.value_json else None


@dataclass
class OfflineRun:
    """What a run logged: config, history rows, summary, artifacts, group and job type."""

    run_id: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    run_dir: Path | None = None

    def table(self, key: str) -> dict[str, Any]:
        """{'columns': [...], 'data': [[...]]} of the last table logged under `key`."""
        rows = [row for row in self.history if f"{key}.path" in row]
        if not rows or self.run_dir is None:
            raise KeyError(f"no table {key!r} in this run")
        return json.loads((self.run_dir / "files" / rows[-1][f"{key}.path"]).read_text())

    def series(self, key: str) -> list[Any]:
        """Values of `key` over the history rows that have it."""
        return [row[key] for row in self.history if key in row]


def read_run(path: Path) -> OfflineRun:
    from google.protobuf.json_format import MessageToDict

    run = OfflineRun(run_dir=Path(path).parent)
    for rec in iter_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.group, run.job_type = rec.run.run_id, rec.run.run_group, rec.run.job_type
            for item in rec.run.config.update:
                k, v = _item_value(item)
                run.config[k] = v
        elif kind == "config":
            for item in rec.config.update:
                k, v = _item_value(item)
                run.config[k] = v
        elif kind == "history":
            run.history.append(dict(_item_value(i) for i in rec.history.item))
        elif kind == "summary":
            for item in rec.summary.update:
                k, v = _item_value(item)
                run.summary[k] = v
        elif kind == "artifact":
            art = MessageToDict(rec.artifact, preserving_proto_field_name=True)
            art["metadata"] = json.loads(rec.artifact.metadata or "{}")
            run.artifacts.append(art)
        elif kind == "files":
            run.files.extend(f.path for f in rec.files.files)
    # W&B wraps config values as {"value": v}; unwrap for readable assertions.
    run.config = {
        k: v["value"] if isinstance(v, dict) and set(v) == {"value"} else v
        for k, v in run.config.items()
    }
    return run


def read_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run under `wandb_dir` (searched recursively)."""
    return [read_run(p) for p in sorted(Path(wandb_dir).rglob("run-*.wandb"))]
