"""The container's main process: installs a SIGTERM handler, then runs kfp's executor module.

Why: the compiled command `exec`s this module, so it is PID 1 of the container and receives the
SIGTERM that a Spot preemption, a cancelled run or a shutdown sends. The kernel ignores a signal
that PID 1 does not handle, so without a handler the step would run on until the runtime's
SIGKILL. Here SIGTERM raises SystemExit in the main thread: `finally` blocks run (W&B finishes,
logs flush) and the step exits with 143. While fine-tune trains, its checkpointing installs its
own handler (finish the step, save a complete checkpoint, then stop) and restores this one.

    python -m components.common.entrypoint kfp.dsl.executor_main --executor_input ... \
        --function_to_execute NAME

The module to run comes first, so the command still names kfp's executor (kfp.local recognises
a lightweight component by it).
"""

from __future__ import annotations

import runpy
import signal
import sys
from types import FrameType


def terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM -> SystemExit(143), the exit status of a process ended by SIGTERM."""
    print("SIGTERM: stopping the step", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise SystemExit("usage: python -m components.common.entrypoint MODULE [ARGS...]")
    signal.signal(signal.SIGTERM, terminate)
    module, sys.argv = argv[0], [argv[0], *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
