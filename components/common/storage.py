"""Read inputs from local paths or `gs://` URIs with the real google-cloud-storage client.

Why the client and not gcsfuse paths: locally there is no `/gcs` mount, and the tests point the
same client at a GCS emulator with `STORAGE_EMULATOR_HOST`. The client is created lazily (importing
it is slow) and anonymous when an emulator is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from components.common.errors import InputError

# How long one GCS call may keep retrying transient errors (429, 5xx, connection reset) before
# the step gives up. google-cloud-storage's own policy does the backoff (1 s doubling to 60 s).
RETRY_TIMEOUT_S = 300.0
# Reading an input (a dataset, a prompts file) gives up sooner: nothing is lost by stopping.
READ_RETRY_TIMEOUT_S = 60.0


class StorageUnavailable(RuntimeError):
    """GCS kept failing with transient errors past the retry deadline (an outage, not a typo)."""


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


def retry_policy(timeout: float | None = None) -> Any:
    """google-cloud-storage's DEFAULT_RETRY (exponential backoff on 408/429/5xx and connection
    errors) with our deadline. Passed explicitly to every write: the library only retries uploads
    by default when a generation precondition makes them idempotent, and ours are idempotent
    anyway (same bytes to the same name)."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(RETRY_TIMEOUT_S if timeout is None else timeout)


@contextmanager
def gcs_errors(uri: str, action: str) -> Iterator[None]:
    """Turn the client's exceptions into messages that say what to fix.

    Permanent problems (no bucket, no permission, no credentials) become InputError; transient
    ones that outlived the retry deadline become StorageUnavailable."""
    from google.api_core import exceptions
    from google.auth.exceptions import DefaultCredentialsError

    bucket = split_gcs(uri)[0] if is_gcs(uri) else uri
    try:
        yield
    except exceptions.NotFound as exc:
        if "bucket" in str(exc).lower():
            raise InputError(
                f"cannot {action} {uri}: bucket gs://{bucket} does not exist; create it "
                f"(gcloud storage buckets create gs://{bucket}) or fix the URI"
            ) from None
        raise
    except exceptions.Forbidden:
        role = "objectViewer" if action == "read" else "objectAdmin"
        raise InputError(
            f"cannot {action} {uri}: permission denied; grant the job's service account "
            f"roles/storage.{role} on gs://{bucket}"
        ) from None
    except DefaultCredentialsError:
        raise InputError(
            f"cannot {action} {uri}: no Google credentials; run `gcloud auth application-default "
            "login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file "
            "(STORAGE_EMULATOR_HOST for a local GCS emulator)"
        ) from None
    except exceptions.RetryError as exc:
        after = ("check the network and retry" if action == "read" else
                 "the last complete checkpoint is intact, rerun to resume")
        raise StorageUnavailable(
            f"cannot {action} {uri}: GCS kept failing for "
            f"{READ_RETRY_TIMEOUT_S if action == 'read' else RETRY_TIMEOUT_S:g} s of retries "
            f"({exc.cause!r}); "
            f"{after}"
        ) from exc


class LocalBlob:
    """A file standing in for a GCS object (a local run's checkpoints live in its run folder):
    the attributes and methods of `google.cloud.storage.Blob` the checkpoint store uses."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def crc32c(self) -> str:
        import zlib

        crc = 0
        with self.path.open("rb") as f:
            while chunk := f.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
        return f"{crc:08x}"

    def download_as_bytes(self, retry: Any = None) -> bytes:
        return self.path.read_bytes()

    def download_to_filename(self, filename: str, retry: Any = None) -> None:
        import shutil

        shutil.copyfile(self.path, filename)

    def delete(self, retry: Any = None) -> None:
        self.path.unlink(missing_ok=True)
        with suppress(OSError):  # the emptied folder too: a local store leaves no husks
            self.path.parent.rmdir()


def object_name(uri: str) -> str:
    """What `list_blobs(uri)` names its objects by: the path inside the bucket, or the local
    path itself."""
    return split_gcs(uri)[1] if is_gcs(uri) else uri


def _write_local(target: Path, write: Any, exclusive: bool = False) -> LocalBlob:
    """Write a temporary file beside `target`, then rename (or, `exclusive`, link) it into
    place: a kill or a full disk never leaves a half-written file under the real name."""
    import tempfile

    from google.api_core import exceptions

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise exceptions.PreconditionFailed(f"{target} exists") from None
        else:
            os.replace(tmp, target)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
    return LocalBlob(target)


def upload_file(local: Path, uri: str, if_generation_match: int | None = None) -> Any:
    """Upload one file with retries; returns the blob (its generation, size and crc32c set)."""
    if not is_gcs(uri):
        import shutil

        def copy(f: Any) -> None:
            with local.open("rb") as src:
                shutil.copyfileobj(src, f)

        return _write_local(Path(uri), copy, exclusive=if_generation_match == 0)
    bucket, name = split_gcs(uri)
    blob = client().bucket(bucket).blob(name)
    blob.upload_from_filename(
        str(local), if_generation_match=if_generation_match, retry=retry_policy()
    )
    return blob


def upload_bytes(data: bytes, uri: str, if_generation_match: int | None = None) -> Any:
    if not is_gcs(uri):
        return _write_local(Path(uri), lambda f: f.write(data), exclusive=if_generation_match == 0)
    bucket, name = split_gcs(uri)
    blob = client().bucket(bucket).blob(name)
    blob.upload_from_string(data, if_generation_match=if_generation_match, retry=retry_policy())
    return blob


def upload_folder(local_dir: Path, uri: str) -> list[Any]:
    """Upload every file under `local_dir` to the gs:// prefix `uri`; returns the blobs."""
    return [
        upload_file(path, f"{uri.rstrip('/')}/{path.relative_to(local_dir).as_posix()}")
        for path in sorted(local_dir.rglob("*"))
        if path.is_file()
    ]


def list_blobs(uri: str) -> list[Any]:
    """Every object under a gs:// prefix (name, size, crc32c, generation), or every file under
    a local one (temporary files of an interrupted write left out)."""
    if not is_gcs(uri):
        root = Path(uri.rstrip("/"))
        if not root.is_dir():
            return []
        return [LocalBlob(p) for p in sorted(root.rglob("*"))
                if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp"))]
    bucket, prefix = split_gcs(uri)
    return list(client().list_blobs(bucket, prefix=prefix, retry=retry_policy()))


def delete_blob(blob: Any) -> None:
    """Delete, ignoring objects already gone (a retried delete may find its own work done)."""
    from google.api_core import exceptions

    with suppress(exceptions.NotFound):
        blob.delete(retry=retry_policy())


def read_bytes(uri: str) -> bytes:
    """Whole file from a local path or gs:// URI; a clear InputError when it is not there."""
    if is_gcs(uri):
        from google.api_core import exceptions

        bucket, blob = split_gcs(uri)
        if not blob:
            raise InputError(f"{uri} names a bucket, not a file; write gs://{bucket}/path/file.jsonl")
        with gcs_errors(uri, "read"):
            try:
                return client().bucket(bucket).blob(blob).download_as_bytes(
                    retry=retry_policy(READ_RETRY_TIMEOUT_S)
                )
            except exceptions.NotFound as exc:
                if "bucket" in str(exc).lower():
                    raise
                raise InputError(
                    f"{uri} does not exist in gs://{bucket}; check the object name "
                    f"(gcloud storage ls gs://{bucket}/{blob.rsplit('/', 1)[0] if '/' in blob else ''})"
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
        blob.download_to_filename(str(target), retry=retry_policy())
    return dest
