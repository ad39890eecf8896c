"""Where the embedded default lives, and how `embedded://` references resolve to it.

Why a URI scheme: pipeline parameters must be the same strings locally and on Vertex. A bare
local path would bake this machine's layout into the compiled YAML; `embedded://tiny-gemma3`
resolves inside whatever environment (laptop venv or the image) the step runs in.
"""

from __future__ import annotations

import re
from pathlib import Path

from components.common.errors import InputError

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
EMBEDDED_SCHEME = "embedded://"
EMBEDDED_DATASET = ASSETS_DIR / "dolly-15k-sample.jsonl"
EMBEDDED_MODEL = ASSETS_DIR / "tiny-gemma3"


def resolve_embedded(ref: str) -> str:
    """Map `embedded://NAME` to the shipped file or folder; leave any other reference alone."""
    if not ref.startswith(EMBEDDED_SCHEME):
        return ref
    name = ref[len(EMBEDDED_SCHEME) :]
    path = ASSETS_DIR / name
    if not name or not path.exists() or path.name.startswith(".") or path.suffix == ".md":
        available = sorted(p.name for p in ASSETS_DIR.iterdir()
                           if not p.name.startswith(".") and p.suffix != ".md")
        raise InputError(
            f"unknown embedded asset {ref!r}; use one of "
            + ", ".join(EMBEDDED_SCHEME + a for a in available)
        )
    return str(path)


def pipeline_job_name(output_path: str) -> str:
    """The pipeline run an output artifact belongs to, read from its path.

    Why from the path: a `{{$.pipeline_job_name}}` input would be part of the step's cache key
    and no resubmit would ever hit the cache. Both runners lay outputs out as
    `<root>/[<project number>/]<job name>/<task>[_<id>]/<output>` (Vertex mounts gs:// at
    /gcs/), so the name is the output's grandparent folder; the local runner nests a
    ParallelFor's tasks one folder deeper (`for-loop-N-iteration-I/`). '' when too short."""
    parts = Path(output_path).parts
    if len(parts) >= 5 and re.fullmatch(r"for-loop-\d+-iteration-\d+", parts[-3]):
        return parts[-4]
    return parts[-3] if len(parts) >= 4 else ""


def storage_uri(path: str) -> str:
    """Where an artifact lives for services outside the container: Vertex mounts gs://b/x at
    /gcs/b/x, and the Model Registry wants the gs:// form; local paths stay as they are."""
    return "gs://" + path[len("/gcs/"):] if path.startswith("/gcs/") else path


def looks_like_hub_id(source: str) -> bool:
    """`owner/name` with no file extension and no local file of that name."""
    parts = source.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not source.endswith((".json", ".jsonl", ".gz", ".parquet", ".csv"))
        and not source.startswith((".", "/", "~"))
        and not Path(source).exists()
    )
