"""The dataset's content key: an input of prepare-data, so that its cache key (and the cache key
of every step after it) changes exactly when the data does, not when a URI string does.

The data-key task runs with caching off at each run, scheduled ones included: a `gs://` object
overwritten in place gets a new key, an unchanged one keeps its key and every cached step is
reused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from components.common.config import NoParameters
from components.common.paths import resolve_embedded
from components.common.step import StepResult
from components.common.storage import is_gcs

__all__ = ["data_key", "run_data_key"]


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _local_key(path: Path) -> str:
    if path.is_file():
        return f"sha256:{_file_digest(path)}"
    files = sorted(p for p in path.rglob("*") if p.is_file())
    listing = "\n".join(f"{p.relative_to(path)} {_file_digest(p)}" for p in files)
    return f"sha256:{hashlib.sha256(listing.encode()).hexdigest()}"


def _blob_hash(blob: object) -> str:
    """GCS's own content hash: MD5 where it has one (composite objects have only CRC32C)."""
    md5 = getattr(blob, "md5_hash", None)
    return f"md5:{md5}" if md5 else f"crc32c:{blob.crc32c}:{blob.size}"  # type: ignore[attr-defined]


def _gcs_key(uri: str) -> str:
    from components.common.errors import InputError
    from components.common.storage import client, gcs_errors, retry_policy, split_gcs

    bucket_name, name = split_gcs(uri)
    with gcs_errors(uri, "read"):
        bucket = client().bucket(bucket_name)
        blob = bucket.get_blob(name, retry=retry_policy(60)) if name else None
        if blob is not None:
            return f"gcs:{_blob_hash(blob)}"
        blobs = sorted(bucket.list_blobs(prefix=name.rstrip("/") + "/", retry=retry_policy(60)),
                       key=lambda b: b.name)
    if not blobs:
        raise InputError(f"{uri} does not exist (no object and no folder of that name)")
    listing = "\n".join(f"{b.name} {_blob_hash(b)}" for b in blobs)
    return f"gcs:sha256:{hashlib.sha256(listing.encode()).hexdigest()}"


def _hub_key(dataset_id: str) -> str:
    """A hub dataset's current commit; the id alone when the hub cannot be asked."""
    try:
        from huggingface_hub import HfApi

        return f"hub:{dataset_id}@{HfApi().dataset_info(dataset_id).sha}"
    except Exception:  # noqa: BLE001 - offline, gated or unknown: prepare-data says which
        return f"hub:{dataset_id}"


def data_key(source: str) -> str:
    """The content key of a dataset reference: GCS's MD5 (or CRC32C) of a `gs://` object, the
    SHA-256 of a local or embedded file (or of a folder's files), a hub dataset's commit."""
    source = resolve_embedded(source.strip())
    if any(c in source for c in "*?["):  # a glob of shards: each matching file's key
        from components.common.sources import shard_files

        listing = "\n".join(f"{f} {data_key(f)}" for f in shard_files(source) or [])
        return f"glob:sha256:{hashlib.sha256(listing.encode()).hexdigest()}"
    if is_gcs(source):
        return _gcs_key(source)
    path = Path(source).expanduser()
    if path.exists():
        return _local_key(path)
    return _hub_key(source)


def run_data_key(cfg: NoParameters, *, dataset: str) -> StepResult:
    """The data-key step: `dataset`'s content key, the task's return value."""
    key = data_key(dataset)
    print(f"data key of {dataset}: {key}", flush=True)
    return StepResult(value=key)
