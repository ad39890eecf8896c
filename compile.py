"""Compile the pipeline to a YAML template. No cloud calls; no environment needed.

    uv run python compile.py                                  # -> build/dolly-lora.yaml
    uv run python compile.py --image REGION-docker.pkg.dev/P/dolly-lora/trainer@sha256:...
    uv run python compile.py --capacity SPOT --timeout 21600s
    DOLLY_LORA_IMAGE=... uv run python compile.py             # the same, from the environment

The image and the GPU machine are compile-time settings (`pipelines.settings`): flags win over
DOLLY_LORA_* variables, which win over the defaults (g2-standard-8, 1 x NVIDIA_L4). The written
path is the last line printed; its first line records the settings, the source digest and the
commit (`pipelines.compiler`), which `submit` checks. Compiling twice gives byte-identical files.

    uv run python compile.py --target kfp        # -> build/dolly-lora-kfp.yaml (open-source KFP)
    uv run python compile.py --profile 4b-qlora  # Gemma 3 4B QLoRA on 1 x L4 (README: Bigger models)

A profile (pipelines/resources.py PROFILES) sets the model, precision, batch and sequence
parameters' defaults and the GPU machine together; the flags above and DOLLY_LORA_* still win.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.compiler import compile_pipeline

__all__ = ["compile_pipeline", "main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="YAML file to write [build/dolly-lora.yaml; "
                        "build/dolly-lora-kfp.yaml for --target kfp]")
    parser.add_argument("--image", help="image for every step, tag or @sha256 digest "
                        "[env DOLLY_LORA_IMAGE]")
    parser.add_argument("--target", choices=["vertex", "kfp", "local"], help="vertex "
                        "(default): GPU steps as Vertex custom jobs; kfp: open-source Kubeflow "
                        "Pipelines on GKE; local: plain tasks (kfp.local)")
    from pipelines.resources import PROFILES

    parser.add_argument("--profile", choices=list(PROFILES), help="model, machine, GPUs, "
                        "precision, batch and sequence together [default; env "
                        "DOLLY_LORA_PROFILE]")
    parser.add_argument("--machine-type", help="training machine [g2-standard-8]")
    parser.add_argument("--accelerator-type", help="training GPU [NVIDIA_L4]")
    parser.add_argument("--accelerator-count", type=int, help="GPUs [1]")
    parser.add_argument("--boot-disk-gb", dest="boot_disk_size_gb", type=int, help="[200]")
    parser.add_argument("--timeout", help="training job timeout, e.g. 21600s [86400s]")
    parser.add_argument("--capacity", choices=["STANDARD", "SPOT", "FLEX_START"],
                        help="on-demand, Spot (preemptible) or FLEX_START (queued) [STANDARD]")
    parser.add_argument("--max-wait-duration", help="FLEX_START: wait for capacity [3600s]")
    args = parser.parse_args(argv)

    from components.common.errors import InputError
    from components.images import PLACEHOLDER_PROJECT
    from pipelines.settings import CompileSettings

    overrides = {k: v for k, v in vars(args).items() if k != "out"}
    try:
        settings = CompileSettings.load(overrides)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if PLACEHOLDER_PROJECT in settings.image:
        print(f"note: placeholder image {settings.image}; pass --image (or DOLLY_LORA_IMAGE) "
              "before submitting to Vertex", file=sys.stderr)
    print(compile_pipeline(args.out, settings).resolve())


if __name__ == "__main__":
    main()
