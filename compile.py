"""Compile the pipeline to a YAML template. No environment, no cloud calls.

    uv run python compile.py                      # -> build/dolly-lora.yaml
    uv run python compile.py --out my.yaml

The written path is the last line printed. Compiling twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = Path("build") / "dolly-lora.yaml"


def compile_pipeline(out: Path = DEFAULT_OUT) -> Path:
    from kfp import compiler

    from pipelines.lora_pipeline import lora_pipeline

    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(lora_pipeline, package_path=str(out))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="YAML file to write")
    args = parser.parse_args(argv)
    print(compile_pipeline(args.out).resolve())


if __name__ == "__main__":
    main()
