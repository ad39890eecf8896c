"""Runs `train()` in a child process for kill -9 tests, with hooks that hold it at a known point.

    python -m tests.train_driver SPEC.json

SPEC: {"cfg": {...TrainConfig...}, "train": rows.jsonl, "validation": rows.jsonl, "out": dir,
"run_name": str, "signals": dir, "pause_at_step": int|null, "hold_marker_at_step": int|null,
"retry_timeout": float|null, "nprocs": int|null}. The hooks write `signals/paused-<step>` or
`signals/holding-<step>` and then block, so the test kills the process exactly there (waiting on
those files, not on sleeps). `signals/step` always holds the last finished step.

With "nprocs" > 1 the driver starts that many training processes with the project's launcher
(`components.fine_tune.distributed.launch`, torchrun's), each installing the hooks itself (they
are spawned, so nothing patched here would reach them); rank 0 writes the signals and holds, the
others then wait for it in the next collective. Kill the driver's process group to kill them all.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from components.common.results import TrainMetrics


def _block(flag: Path) -> None:
    flag.touch()
    deadline = time.monotonic() + 600  # bounded: an orphaned child never lives forever
    while time.monotonic() < deadline:
        time.sleep(0.5)
    raise SystemExit(3)


def install_hooks(spec: dict[str, Any], signals: Path) -> None:
    import trl
    from transformers import TrainerCallback

    from components.common import storage
    from components.fine_tune import checkpointing, distributed

    if spec.get("retry_timeout") is not None:
        storage.RETRY_TIMEOUT_S = float(spec["retry_timeout"])
    if not distributed.is_main():
        return

    class Hook(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            tmp = signals / "step.tmp"
            tmp.write_text(str(state.global_step))
            tmp.replace(signals / "step")
            if state.global_step == spec.get("pause_at_step"):
                _block(signals / f"paused-{state.global_step}")

    base = trl.SFTTrainer

    class HookedTrainer(base):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.add_callback(Hook())

    trl.SFTTrainer = HookedTrainer

    hold = spec.get("hold_marker_at_step")
    if hold is not None:
        upload_bytes = storage.upload_bytes

        def holding_upload(data, uri, if_generation_match=None):
            if uri.endswith(f"{checkpointing.step_name(hold)}/{checkpointing.MARKER}"):
                _block(signals / f"holding-{hold}")
            return upload_bytes(data, uri, if_generation_match)

        storage.upload_bytes = holding_upload


def run(spec: dict[str, Any], work_dir: str = "") -> TrainMetrics:
    """One training process (every rank when several): hooks, then `train()`."""
    from components.common.config import TrainConfig
    from components.common.jsonl import read_rows
    from components.fine_tune import distributed
    from components.fine_tune.train import train

    signals = Path(spec["signals"])
    install_hooks(spec, signals)
    result = train(TrainConfig(**spec["cfg"]), read_rows(spec["train"]),
                   read_rows(spec["validation"]), Path(spec["out"]), run_name=spec["run_name"],
                   work_dir=work_dir)
    if distributed.is_main():
        result.metrics.write(signals / "result.json")
    return result.metrics


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    Path(spec["signals"]).mkdir(parents=True, exist_ok=True)
    nprocs = int(spec.get("nprocs") or 1)
    if nprocs == 1:
        run(spec)
        return
    from components.common.config import TrainConfig
    from components.fine_tune import checkpointing, distributed

    checkpointing.open_store(TrainConfig(**spec["cfg"]), spec["run_name"])  # as run_fine_tune
    distributed.launch(nprocs, run, spec, tempfile.mkdtemp(prefix="fine-tune-"))


if __name__ == "__main__":
    main(sys.argv[1])
