"""Stand-ins for a step's executor module, run by `components.common.entrypoint` in tests:
    python -m components.common.entrypoint tests.step_stand_ins MODE --function_to_execute NAME

MODE: `sigkill` holds 300 MiB and is then killed the way the kernel's OOM killer kills
(SIGKILL); `allocate` asks torch's CPU allocator for more memory than exists; `cuda` raises
torch's CUDA out-of-memory error; `sleep` prints its pid and waits in a try/finally.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main(mode: str) -> None:
    if mode == "sigkill":
        held = bytearray(300 * 2**20)
        held[:: 4096] = b"x" * len(held[:: 4096])  # touch every page: resident, not just mapped
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "allocate":
        import torch

        torch.empty(2**44, dtype=torch.uint8)  # 16 TiB
    if mode == "cuda":
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")
    if mode == "sleep":
        try:
            print("pid", os.getpid(), flush=True)
            time.sleep(600)
        finally:
            print("cleaned up", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
