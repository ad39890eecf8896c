"""Overhead of the local runner: wall time of `submit --local` vs the sum of its steps' times.

Runs the real CLI in a subprocess on the embedded default, then reads `summary.json`, whose
per-step seconds are measured by kfp.local's own task start/finish (each step's process,
imports included). Everything else (CLI start, parameter and data checks, kfp.local's
orchestration, summary) is the overhead.

    uv run python benchmarks/local_overhead.py                 # last line: ratio=<number>
    uv run python benchmarks/local_overhead.py --param max_steps=10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--param", action="append", default=[], help="name=value override")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "cli.submit", "--local", "--output-dir", out,
               "--run-id", "overhead"]
        for p in args.param:
            cmd += ["--param", p]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1])
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(proc.stderr[-2000:])
        summary = json.loads(Path(proc.stdout.strip().splitlines()[-1]).read_text())
    steps = {k: v["seconds"] for k, v in summary["steps"].items()}
    total = sum(steps.values())
    for name, secs in steps.items():
        print(f"{name:14s} {secs:7.1f} s  {secs / wall:6.1%} of wall")
    print(f"{'steps total':14s} {total:7.1f} s")
    print(f"{'pipeline':14s} {summary['wall_seconds']:7.1f} s  (kfp.local from first to last step)")
    print(f"{'submit --local':14s} {wall:7.1f} s  (whole command: CLI, checks, runner, summary)")
    ratio = wall / total
    print(f"ratio={ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
