"""Compile the pipeline to a YAML template that says what it was built from.

Why a stamp: `submit` must never send a template that no longer matches the code or the
settings the user asked for (another image, a changed component). The first line of every
compiled template is a YAML comment holding the compile settings, a digest of the source that
shapes the template (`components/` and `pipelines/`) and the git commit. Comments survive an
Artifact Registry upload and do not change the PipelineSpec; `read_stamp` reads the line back.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

STAMP_PREFIX = "# dolly-lora build: "
DEFAULT_TEMPLATES: dict[str, Path] = {
    "vertex": Path("build") / "dolly-lora.yaml",
    "kfp": Path("build") / "dolly-lora-kfp.yaml",
    "local": Path("build") / "dolly-lora-local.yaml",
}
DEFAULT_TEMPLATE = DEFAULT_TEMPLATES["vertex"]
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def git_commit(cwd: Path | None = None) -> str:
    """Short commit of the working tree ('-dirty' if it has changes), or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, check=True,
                             capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, check=True, capture_output=True, text=True,
                               timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def source_digest(root: Path = _PACKAGE_ROOT) -> str:
    """Digest of every Python file under components/ and pipelines/: the code a template embeds
    (component bodies, signatures, the DAG). Same code, same digest, with or without git."""
    h = hashlib.sha256()
    for pkg in ("components", "pipelines"):
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def stamp(settings: Any) -> dict[str, Any]:
    return {"source": source_digest(), "commit": git_commit(_PACKAGE_ROOT),
            "settings": settings.flat()}


def compile_pipeline(out: Path | None = None, settings: Any = None) -> Path:
    """Compile for `settings` (default: Vertex target, default image and machine) to `out`
    (default: the target's file under build/), stamped on its first line."""
    from kfp import compiler

    from pipelines.lora_pipeline import build_pipeline
    from pipelines.settings import CompileSettings

    settings = settings or CompileSettings()
    out = out or DEFAULT_TEMPLATES[settings.target]
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(settings), package_path=str(out))
    line = STAMP_PREFIX + json.dumps(stamp(settings), sort_keys=True)
    out.write_text(line + "\n" + out.read_text())
    return out


def read_stamp(path: Path) -> dict[str, Any] | None:
    """The stamp of a compiled template, or None (compiled elsewhere, or by an older version)."""
    try:
        with path.open(encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return None
    if not first.startswith(STAMP_PREFIX):
        return None
    try:
        data = json.loads(first[len(STAMP_PREFIX):])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def stale_reasons(found: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """Why a template stamped `found` is not what `wanted` (flat settings) would compile to."""
    if found is None:
        return ["it carries no build stamp (compiled elsewhere or by an older version)"]
    reasons = []
    if found.get("source") != source_digest():
        reasons.append(f"the pipeline code changed since it was compiled (commit "
                       f"{found.get('commit', '?')})")
    have = found.get("settings", {})
    for key in sorted(wanted):
        if str(have.get(key)) != str(wanted[key]):
            reasons.append(f"{key} is {have.get(key)!r} in it, {wanted[key]!r} wanted")
    return reasons
