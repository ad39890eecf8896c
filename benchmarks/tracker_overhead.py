"""Added wall time of tracking: `submit --local` with every local tracker vs with none.

Runs the real CLI in a subprocess on the embedded default, side by side in one process: once with
`trackers=` (none) and once with `trackers=wandb,tensorboard,mlflow` (W&B offline, TensorBoard
event files and a local MLflow store next to summary.json), alternating the order each round so
that a warm cache or a busy neighbour does not favour one side. Prints both walls, the per-step
seconds of each, the CPU seconds of each command's whole process tree (steady on a shared
machine, where wall time varies with the neighbours' load), and the wall ratio (all / none);
the last line is `ratio=<number>`. `vertex` is left
out: it needs Google Cloud credentials, which a local run does not have.

    uv run python benchmarks/tracker_overhead.py                # one round (~6 minutes)
    uv run python benchmarks/tracker_overhead.py --rounds 2 --param max_steps=20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALL = "wandb,tensorboard,mlflow"
ROOT = Path(__file__).resolve().parents[1]


def run(trackers: str, out: Path, run_id: str, params: list[str]) -> dict:
    """One `submit --local`; returns its summary with the command's own wall time."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR",
                "WANDB_CONFIG_DIR"):
        env[var] = str(out / "wandb-home")
    env.pop("MLFLOW_TRACKING_URI", None)  # the local store, as a first local run would use
    cmd = [sys.executable, "-m", "cli.submit", "--local", "--output-dir", str(out),
           "--run-id", run_id, "--param", f"trackers={trackers}"]
    for p in params:
        cmd += ["--param", p]
    t0, cpu0 = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        sys.exit(f"{run_id} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(Path(proc.stdout.strip().splitlines()[-1]).read_text())
    summary["command_seconds"] = wall
    summary["cpu_seconds"] = cpu
    return summary


def _children_cpu() -> float:
    """User + system CPU seconds of every finished child process (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--param", action="append", default=[], help="name=value override")
    args = parser.parse_args(argv)
    walls: dict[str, list[float]] = {"none": [], "all": []}
    cpus: dict[str, list[float]] = {"none": [], "all": []}
    steps: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = [("none", ""), ("all", ALL)]
            for label, trackers in order if r % 2 == 0 else order[::-1]:
                s = run(trackers, Path(tmp), f"{label}-{r}", args.param)
                walls[label].append(s["command_seconds"])
                cpus[label].append(s["cpu_seconds"])
                steps[label] = {k: v["seconds"] for k, v in s["steps"].items()}
                received = s["tracking"]["received"]
                print(f"round {r + 1} {label:4s} {s['command_seconds']:7.1f} s wall "
                      f"{s['cpu_seconds']:7.1f} s CPU  "
                      f"trackers received: {json.dumps(received)}", flush=True)
    print(f"{'step':16s} {'none':>8s} {'all':>8s} {'added':>8s}")
    for name in steps["none"]:
        a, b = steps["none"][name], steps["all"].get(name, float("nan"))
        print(f"{name:16s} {a:7.1f}s {b:7.1f}s {b - a:+7.1f}s")
    none, every = min(walls["none"]), min(walls["all"])
    print(f"submit --local, trackers none: {none:.1f} s; {ALL}: {every:.1f} s; "
          f"added {every - none:+.1f} s (best of {args.rounds})")
    cn, ca = min(cpus["none"]), min(cpus["all"])
    print(f"CPU seconds (all processes), none: {cn:.1f}; {ALL}: {ca:.1f}; added {ca - cn:+.1f} "
          f"(ratio {ca / cn:.2f})")
    ratio = every / none
    print(f"ratio={ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
