"""Compile the pipeline to a YAML template that says what it was built from.

    uv run python compile.py [--target kfp] [--profile 4b-qlora] [--image URI] [--capacity SPOT]

Why a stamp: `submit` must never send a template that no longer matches the code or the settings
asked for. The first line of every template is a YAML comment with the compile settings, a digest
of `components/` and `pipelines/` and the git commit; comments survive an Artifact Registry
upload and leave the PipelineSpec unchanged. Compiling twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

STAMP_PREFIX = "# dolly-lora build: "
DEFAULT_TEMPLATES: dict[str, Path] = {
    "vertex": Path("build") / "dolly-lora.yaml",
    "kfp": Path("build") / "dolly-lora-kfp.yaml",
    "local": Path("build") / "dolly-lora-local.yaml",
}
DEFAULT_TEMPLATE = DEFAULT_TEMPLATES["vertex"]
RUN_ID_PREFIX = "dolly-lora"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def default_run_id(now: dt.datetime | None = None) -> str:
    """The run id (local run folder, Vertex job id, KFP run name) when none is given:
    dolly-lora-YYYYMMDD-HHMMSS, valid as a Vertex job id and a checkpoint folder name."""
    return f"{RUN_ID_PREFIX}-{(now or dt.datetime.now()):%Y%m%d-%H%M%S}"


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
    from pipelines.settings import CompileSettings, with_deadlines

    settings = settings or CompileSettings()
    if not settings.training.step_timeouts:  # each GPU job's deadline from the estimate
        settings = with_deadlines(settings)
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


def main(argv: list[str] | None = None) -> None:
    """`python compile.py [flags]`: compile, print the written path; bad settings exit 2."""
    parser = argparse.ArgumentParser(prog="compile.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="YAML file to write [the target's file: " +
                        ", ".join(f"{t}: {p}" for t, p in DEFAULT_TEMPLATES.items()) + "]")
    from planning.profiles import PROFILES

    parser.add_argument("--profile", help="model, machine, GPUs, precision, batch and sequence "
                        f"together: {', '.join(PROFILES)} [default; env DOLLY_LORA_PROFILE]")
    parser.add_argument("--image", help="image for every step, tag or @sha256 digest "
                        "[env DOLLY_LORA_IMAGE]")
    parser.add_argument("--target", choices=["vertex", "kfp", "local"], help="vertex "
                        "(default): GPU steps as Vertex custom jobs; kfp: open-source Kubeflow "
                        "Pipelines on GKE; local: plain tasks (kfp.local)")
    parser.add_argument("--machine-type", help="training machine [g2-standard-8]")
    parser.add_argument("--accelerator-type", help="training GPU [NVIDIA_L4]")
    parser.add_argument("--accelerator-count", type=int, help="GPUs [1]")
    parser.add_argument("--boot-disk-gb", dest="boot_disk_size_gb", type=int, help="[200]")
    parser.add_argument("--timeout", help="every GPU job's timeout, e.g. 21600s [each step's own "
                        "deadline: 3 x its estimated time + start-up, at least 30 min]")
    parser.add_argument("--capacity", choices=["STANDARD", "SPOT", "FLEX_START"],
                        help="on-demand, Spot (preemptible) or FLEX_START (queued) [STANDARD]")
    parser.add_argument("--max-wait-duration", help="FLEX_START: wait for capacity [3600s]")
    parser.add_argument("--tensorboard", help="Vertex TensorBoard the fine-tune job streams to: "
                        "projects/P/locations/L/tensorboards/ID [env DOLLY_LORA_TENSORBOARD]")
    parser.add_argument("--base-output-dir", dest="base_output_directory", help="gs:// folder "
                        "for the fine-tune job's outputs (TensorBoard logs), needed with "
                        "--tensorboard [env DOLLY_LORA_BASE_OUTPUT_DIR]")
    parser.add_argument("--model-display-name", help="Model Registry model that gets the new "
                        "versions [named after the run's base model: dolly-lora-<model>]")
    args = parser.parse_args(argv)

    from components.common.errors import InputError
    from components.common.images import PLACEHOLDER_PROJECT
    from pipelines.settings import resolve

    overrides = {k: v for k, v in vars(args).items() if k != "out"}
    try:
        settings = resolve(settings=overrides).settings
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    out = args.out
    if out is not None and (out.is_dir() or (out.parent.exists() and not out.parent.is_dir())):
        print(f"error: --out {out} is {'a folder' if out.is_dir() else 'under a file'}; give "
              "the path of the YAML file to write, e.g. build/dolly-lora.yaml", file=sys.stderr)
        sys.exit(2)
    if PLACEHOLDER_PROJECT in settings.image:
        print(f"note: placeholder image {settings.image}; pass --image (or DOLLY_LORA_IMAGE) "
              "before submitting to Vertex", file=sys.stderr)
    try:
        written = compile_pipeline(out, settings)
    except OSError as exc:
        print(f"error: cannot write {exc.filename or out}: {exc.strerror}; give an --out "
              "path you can write to", file=sys.stderr)
        sys.exit(2)
    print(written.resolve())
