"""A permanent error in fine-tune, recorded so that Vertex's restarts and retries of the same job
stop in seconds instead of repeating it for hours.

Why a record and not an exit code: Vertex restarts a custom-job worker that exits non-zero (up
to five times, then the whole job up to three times) unless the error is one it counts as
permanent, and its docs name no exit code it never restarts; the pipeline's task retry
(`set_retry`) retries a failed task whatever its code (docs/vertex.md, Retries). So the step
itself refuses to run again: bad input and running out of memory fail the same way every time.
The record is keyed by the pipeline job: `submit --resume` (a new job) starts clean.
"""

from __future__ import annotations

import json

from components.common import storage
from components.common.errors import InputError

PERMANENT_EXIT = 2  # what the project uses for bad input, here as everywhere


def record_uri(prefix: str, job: str) -> str:
    return f"{prefix.rstrip('/')}/permanent-failure-{job}.json"


def is_permanent(exc: BaseException) -> bool:
    """Bad input, or out of memory: the same settings fail the same way again."""
    from components.common.entrypoint import is_out_of_memory

    return isinstance(exc, InputError) or is_out_of_memory(exc)


def refuse_if_recorded(prefix: str, job: str) -> None:
    """An earlier attempt of this job failed permanently: the same line, at once."""
    uri = record_uri(prefix, job)
    if not storage.list_blobs(uri):
        return
    error = json.loads(storage.read_bytes(uri)).get("error", "")
    raise InputError(f"an earlier attempt of {job} failed permanently, and a restart would "
                     f"fail the same way: {error} (fix it, then `submit --resume {job}`)")


def record(prefix: str, job: str, exc: BaseException) -> None:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
    storage.upload_bytes(json.dumps({"error": line, "type": type(exc).__name__}).encode(),
                         record_uri(prefix, job))
