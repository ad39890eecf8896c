"""The generated signatures, written out: each component's (below its `StepSpec`, in
`components/<step>/component.py`) and the pipeline's (`pipelines/signature.py`).

Why written, not built at import: a signature you can read and grep, as in Kubeflow's
pipelines-components, and nothing `exec`'d. Why rewritten by every pipeline build: a field added
to a config section, and nothing else, must reach its component and the pipeline's parameters;
`refresh` rewrites a stale file before the pipeline is built, says so in one line, and the
staleness test (tests/pipelines/test_signatures.py) fails until the rewritten file is committed.

    uv run python scripts/generate_components.py           # write what is stale
    uv run python scripts/generate_components.py --check   # exit 1 naming it, write nothing
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_SIGNATURE = Path("pipelines") / "signature.py"
PIPELINE_SUMMARY = "LoRA fine-tune of an instruction model on Dolly-format data."


def signature_files(root: Path = ROOT) -> list[Path]:
    """Every generated file, relative to `root`."""
    components = sorted(p.relative_to(root) for p in (root / "components").glob("*/component.py")
                        if p.parent.name != "common")
    return [*components, PIPELINE_SIGNATURE]


def module_name(path: Path) -> str:
    return ".".join(path.with_suffix("").parts)


def pipeline_source() -> str:
    """`pipelines/signature.py`: every `PipelineConfig` field as a typed parameter with its
    default, in step order, and an `Args:` docstring from the fields' help."""
    from components.common.component import annotation_source, args_docstring
    from components.common.config import PipelineConfig, parameter_defaults

    fields = PipelineConfig.model_fields
    defaults = parameter_defaults()
    params = "".join(f"    {name}: {annotation_source(fields[name].annotation)} = {default!r},\n"
                     for name, default in defaults.items())
    doc = args_docstring(PIPELINE_SUMMARY, {n: fields[n].description or "" for n in defaults})
    doc_block = "".join(f"    {line}\n" if line else "\n" for line in f'"""{doc}\n"""'.splitlines())
    return (
        '"""The pipeline\'s signature: every `PipelineConfig` field, its type, default and help '
        "(the\ntext the Vertex console shows beside it).\n\n"
        "Generated from components/common/config.py by scripts/generate_components.py (every "
        "pipeline\nbuild rewrites it when stale): edit the config, not this file. "
        "`pipelines.lora_pipeline`\ngives it a profile's defaults and runs the DAG on the "
        'arguments it returns.\n"""\n\n'
        "from typing import Any\n\n\n"
        f"def lora_pipeline(\n{params}) -> dict[str, Any]:\n{doc_block}"
        "    return dict(locals())\n"
    )


def component_file_source(path: Path, module: ModuleType, text: str) -> str:
    """A component file as it should be: its hand-written part, then the generated code."""
    from components.common.component import GENERATED_MARKER, StepSpec, generated_tail

    head, marker, _ = text.partition(GENERATED_MARKER)
    specs = [v for v in vars(module).values() if isinstance(v, StepSpec)]
    if not marker or not specs:
        raise TypeError(f"{path}: a component file declares StepSpec(s), then the line "
                        f"{GENERATED_MARKER!r}, under which its code is generated")
    missing = set().union(*(s.type_names() for s in specs)) - set(vars(module))
    if missing:
        raise TypeError(f"{path}: the generated code needs {', '.join(sorted(missing))}; "
                        "import them above the specs")
    return head + generated_tail(specs)


def expected_sources(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file's text as the config sections and specs make it now."""
    out = {}
    for path in signature_files(root):
        if path == PIPELINE_SIGNATURE:
            out[path] = pipeline_source()
        else:
            module = importlib.import_module(module_name(path))
            out[path] = component_file_source(path, module, (root / path).read_text())
    return out


def stale(root: Path = ROOT) -> dict[Path, str]:
    """The generated files whose text differs from what they should be, with that text."""
    return {p: t for p, t in expected_sources(root).items()
            if not (root / p).exists() or (root / p).read_text() != t}


def refresh(root: Path = ROOT) -> list[Path]:
    """Rewrite the stale files, reload their modules (the pipeline build then reads the new
    signatures) and name them in one line on stderr. Returns what was rewritten."""
    changed = stale(root)
    for path, text in changed.items():
        target = root / path
        try:
            target.write_text(text)
        except OSError as exc:
            raise RuntimeError(
                f"{path} is out of date with the config sections and cannot be rewritten here "
                f"({exc.strerror}); run `uv run python scripts/generate_components.py` in a "
                "checkout") from None
        # Same size within the same second would keep the old bytecode.
        Path(importlib.util.cache_from_source(str(target))).unlink(missing_ok=True)
        if module_name(path) in sys.modules:
            importlib.reload(sys.modules[module_name(path)])
    if changed:
        print(f"regenerated {', '.join(p.as_posix() for p in changed)} from the config "
              "sections (commit with the change)", file=sys.stderr, flush=True)
    return list(changed)


def main(argv: list[str] | None = None) -> None:
    """`scripts/generate_components.py [--check]`."""
    parser = argparse.ArgumentParser(prog="generate_components.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 naming the stale files; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"stale: {path.as_posix()}", file=sys.stderr)
        if out_of_date:
            print("run: uv run python scripts/generate_components.py", file=sys.stderr)
            raise SystemExit(1)
        return
    if not refresh():
        print(f"up to date: {len(signature_files())} files")
