"""The container's main process: kfp's executor, ending cleanly on SIGTERM.

Why: the compiled command `exec`s this module, so it is PID 1 of the container and receives the
SIGTERM that a Spot preemption, a cancelled run or a shutdown sends. The kernel ignores a signal
that PID 1 does not handle, so without a handler the step would run on until the runtime's
SIGKILL. Here SIGTERM raises SystemExit in the main thread: `finally` blocks run (W&B finishes,
logs flush) and the step exits with 143. While fine-tune trains, its checkpointing installs its
own handler (finish the step, save a complete checkpoint, then stop) and restores this one.

    python -m components.common.entrypoint --executor_input ... --function_to_execute NAME
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM -> SystemExit(143), the exit status of a process ended by SIGTERM."""
    print("SIGTERM: stopping the step", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, terminate)
    from kfp.dsl.executor_main import executor_main

    executor_main()


if __name__ == "__main__":
    main()
