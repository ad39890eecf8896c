"""The generated signature files as they were when this test session started.

Why a snapshot: any pipeline build in the session (an import of `pipelines.lora_pipeline`, a
compile, a local run) rewrites a stale file, after which the file on disk is current and a check
of it would pass; the staleness test compares the generator's output with this copy instead.
`tests/conftest.py` imports this module first, before any test module is collected."""

from __future__ import annotations

from pathlib import Path

from pipelines.generate import ROOT, signature_files

CHECKED_OUT: dict[Path, str | None] = {
    p: (ROOT / p).read_text() if (ROOT / p).exists() else None for p in signature_files()
}
