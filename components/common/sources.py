"""Where instruction data comes from: files (JSONL, .jsonl.gz, JSON array, Parquet, CSV), a
folder or glob of shards, gs://, or a Hugging Face dataset id at a pinned revision.

Why JSON through `json` and not pyarrow: a bad line or a field of another type is a counted,
skipped row (`max_bad_row_fraction`), where pyarrow's JSON reader fails the whole file on one.
Parquet and CSV go through pyarrow, the hub through `datasets`.
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common.errors import InputError
from components.common.paths import looks_like_hub_id, resolve_embedded
from components.common.storage import is_gcs, read_bytes

EXTENSIONS = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv", ".csv.gz")


class ParseError(str):
    """A line that did not parse; kept as a row so it is counted and reported, not dropped."""


@dataclass
class Source:
    rows: list[tuple[int, Any]]  # (1-based row number over all shards, value or ParseError)
    kind: str  # file | shards | hub
    files: dict[str, int] = field(default_factory=dict)  # rows per file or hub split
    revision: str = ""  # the hub commit read (pinned)

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "files": self.files, "revision": self.revision}


def read_json_text(data: bytes, source: str) -> list[Any]:
    """JSONL (or a JSON array): each value, or a ParseError for a line that is not JSON."""
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not content
    except UnicodeDecodeError:
        raise InputError(
            f"{source} is not UTF-8 text; give a JSONL file (one JSON object per line)"
        ) from None
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source} starts as a JSON array but is not valid JSON "
                             f"({exc.msg}, line {exc.lineno})") from None
        return list(values)
    rows: list[Any] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            rows.append(ParseError(f"invalid JSON ({exc.msg})"))
    if rows and isinstance(rows[0], ParseError):
        raise InputError(
            f"{source} is not JSONL: its first line is not JSON; give one JSON object per line "
            "(or a JSON array, Parquet or CSV file)"
        )
    return rows


def read_table(data: bytes, name: str, source: str) -> list[Any]:
    """Rows of one file, by its extension (gzip unwrapped first)."""
    if name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            raise InputError(f"{source} is not a gzip file; give .jsonl.gz only for "
                             "gzip-compressed JSONL") from None
        name = name[: -len(".gz")]
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(io.BytesIO(data)).to_pylist()
        except pa.ArrowException as exc:
            raise InputError(f"{source} is not a Parquet file ({exc})") from None
    if name.endswith(".csv"):
        import pyarrow as pa
        import pyarrow.csv as pcsv

        parse = pcsv.ParseOptions(newlines_in_values=True)  # quoted multi-line answers
        try:
            header = pcsv.read_csv(io.BytesIO(data), parse_options=parse).column_names
            table = pcsv.read_csv(io.BytesIO(data), parse_options=parse,
                                  convert_options=pcsv.ConvertOptions(
                column_types={c: pa.string() for c in header}))  # text stays text: "007"
        except pa.ArrowException as exc:
            raise InputError(f"{source} is not a CSV file with a header row "
                             f"({str(exc).splitlines()[0]})") from None
        return table.to_pylist()
    return read_json_text(data, source)


def _local_files(source: str) -> list[Path] | None:
    """The shard files a local folder or glob names; None when `source` is neither."""
    if any(c in source for c in "*?["):
        return [Path(p) for p in sorted(glob.glob(source, recursive=True)) if Path(p).is_file()]
    path = Path(source).expanduser()
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(EXTENSIONS))
    return None


def _gcs_files(source: str) -> list[str] | None:
    from components.common.storage import gcs_errors, list_blobs, split_gcs

    pattern = any(c in source for c in "*?[")
    if not pattern and not source.endswith("/"):
        return None
    bucket, path = split_gcs(source)
    prefix = path.split("*")[0].split("?")[0].split("[")[0]
    with gcs_errors(source, "list"):
        names = [b.name for b in list_blobs(f"gs://{bucket}/{prefix}")]
    keep = [n for n in names if (fnmatch.fnmatch(n, path) if pattern else n.endswith(EXTENSIONS))]
    return [f"gs://{bucket}/{n}" for n in sorted(keep)]


def shard_files(source: str) -> list[str] | None:
    """The files a folder or glob (local or gs://) names, in read order; None for one file or
    a hub id."""
    source = resolve_embedded(source)
    files = _gcs_files(source) if is_gcs(source) else _local_files(source)
    return None if files is None else [str(f) for f in files]


def read_source(source: str, split: str = "train", config: str = "",
                revision: str = "") -> Source:
    """Every raw row of `source`, numbered from 1 across its shards."""
    given, source = source, resolve_embedded(source)
    shards = _gcs_files(source) if is_gcs(source) else _local_files(source)
    if shards is None and not is_gcs(source) and looks_like_hub_id(source):
        return read_hub(source, split, config, revision)
    if shards is not None and not shards:
        raise InputError(f"{source} matches no data file ({', '.join(EXTENSIONS)})")
    rows: list[tuple[int, Any]] = []
    files: dict[str, int] = {}
    for name in shards or [source]:
        values = read_table(read_bytes(str(name)), str(name), str(name))
        files[str(name) if shards else given] = len(values)
        rows += [(i, v) for i, v in enumerate(values, start=len(rows) + 1)]
    if not rows:
        raise InputError(f"{source} holds no rows; it needs instruction data "
                         "(JSONL, a JSON array, Parquet or CSV)")
    return Source(rows, "shards" if shards else "file", files)


def read_hub(name: str, split: str, config: str, revision: str) -> Source:
    """A hub dataset at one commit: the revision asked for (or the newest) resolved to its
    sha first, so the rows read are the ones the summary names and a rerun reads them again."""
    import datasets
    from huggingface_hub import HfApi

    try:
        sha = HfApi().dataset_info(name, revision=revision or None).sha or revision
        ds = datasets.load_dataset(name, config or None, split=split, revision=sha)
    except Exception as exc:  # the hub raises many types; all mean "cannot read this dataset"
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:160]
        network = any(w in f"{exc.__class__.__name__} {reason}".lower() for w in (
            "connect", "offline", "timeout", "resolve", "network", "unreachable"))
        why = ("reading it as a Hugging Face dataset id needs network access to the hub"
               if network else "it cannot be loaded as a Hugging Face dataset id")
        raise InputError(
            f"{name!r} is not a file here ({Path.cwd()}) and {why} ({reason}); give the path of "
            f"a data file (e.g. ./{name}.jsonl) or a dataset id the hub serves (HF_TOKEN for "
            "gated ones; dataset_split, dataset_config, dataset_revision to choose)"
        ) from None
    rows = [(i, dict(r)) for i, r in enumerate(ds, start=1)]
    if not rows:
        raise InputError(f"{name} split {split!r} holds no rows; choose another dataset_split")
    return Source(rows, "hub", {f"{name}:{config or 'default'}:{split}": len(rows)}, sha)
