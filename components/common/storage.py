"""Read inputs from local paths or `gs://` URIs with the real google-cloud-storage client.

Why the client and not gcsfuse paths: locally there is no `/gcs` mount, and the tests point the
same client at a GCS emulator with `STORAGE_EMULATOR_HOST`. The client is created lazily (importing
it is slow) and anonymous when an emulator is set.
"""

from __future__ import annotations

import os
from pathlib import Path

from components.common.errors import InputError


def is_gcs(uri: str) -> bool:
    return uri.startswith("gs://")


def split_gcs(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> (`bucket`, `a/b`)."""
    if not is_gcs(uri):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, blob = uri[len("gs://") :].partition("/")
    if not bucket:
        raise InputError(f"{uri!r} names no bucket; write gs://BUCKET/path")
    return bucket, blob


def client():
    """A storage client; anonymous against an emulator (STORAGE_EMULATOR_HOST), ADC otherwise."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="local-emulator", credentials=AnonymousCredentials())
    return storage.Client()


def read_bytes(uri: str) -> bytes:
    """Whole file from a local path or gs:// URI; a clear InputError when it is not there."""
    if is_gcs(uri):
        from google.api_core import exceptions

        bucket, blob = split_gcs(uri)
        try:
            return client().bucket(bucket).blob(blob).download_as_bytes()
        except exceptions.NotFound:
            raise InputError(f"{uri} does not exist; check the bucket and object name") from None
        except exceptions.Forbidden:
            raise InputError(
                f"permission denied reading {uri}; grant the service account "
                "roles/storage.objectViewer on the bucket"
            ) from None
    path = Path(uri).expanduser()
    if not path.exists():
        raise InputError(f"{uri} does not exist; check the path (relative to {Path.cwd()})")
    if path.is_dir():
        raise InputError(f"{uri} is a folder; give the JSONL file inside it")
    try:
        return path.read_bytes()
    except PermissionError:
        raise InputError(f"{uri} is not readable; check its permissions") from None


def download_folder(uri: str, dest: Path) -> Path:
    """Copy every object under a gs:// prefix into `dest` (used for gs:// model folders)."""
    bucket_name, prefix = split_gcs(uri.rstrip("/") + "/")
    blobs = list(client().list_blobs(bucket_name, prefix=prefix))
    if not blobs:
        raise InputError(f"nothing found under {uri}; check the model folder URI")
    for blob in blobs:
        rel = blob.name[len(prefix) :]
        if not rel or rel.endswith("/"):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
    return dest
