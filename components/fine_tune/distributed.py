"""Several GPUs in one custom job: one training process per GPU, started by torchrun's launcher.

Why torchrun's Python API (`elastic_launch`) rather than a loop of Popen: it is what `torchrun
--standalone` runs, so rendezvous, per-rank environment, SIGTERM forwarding and a crashed worker
named by rank come for free. A profile sets the per-device batch and accumulation so the global
batch stays what one GPU would use. Only rank 0 writes checkpoints, logs and outputs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

from components.common.config import TrainConfig


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def world_size_for(cfg: TrainConfig) -> int:
    """Processes to train with: `num_processes`, else one per visible GPU (1 on CPU)."""
    return cfg.num_processes or max(visible_gpus(), 1)


def in_worker() -> bool:
    """True inside a process started by the launcher (or by an outer torchrun)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints, logs and outputs."""
    return rank() == 0


def device_for_rank() -> str:
    """This process's device: its own GPU (`cuda:LOCAL_RANK`), or the CPU."""
    import torch

    return f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"


def _initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    """Wait for every process (no-op with one)."""
    if _initialized():
        import torch.distributed as dist

        dist.barrier()


def any_rank(flag: bool, device: Any = "cpu") -> bool:
    """True when `flag` is true on any process. Decisions that change control flow (stop on
    SIGTERM, save now) must be the same on every rank, or the ranks wait for each other forever."""
    if not _initialized():
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (no-op with one process)."""
    if not _initialized():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# NCCL's shared-memory transport between the GPUs of one machine lives in /dev/shm; a container
# started with the runtime's default (64 MB) fails or hangs at the first collective. Below this
# size (an allowance for NCCL's per-peer buffers, not a measured figure) it is turned off and
# NCCL goes through PCIe P2P or sockets instead: slower all-reduce, no crash.
SHM_MIN_BYTES = 1 << 30


def shm_bytes(path: str = "/dev/shm") -> int:
    """Size of the shared-memory filesystem (0 when there is none)."""
    import shutil

    try:
        return shutil.disk_usage(path).total
    except OSError:
        return 0


def nccl_env(nprocs: int, shm_total: int, env: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """What to add to the environment before `nprocs` NCCL processes start: NCCL_SHM_DISABLE=1
    when /dev/shm (`shm_total` bytes) is too small, unless the user already set it."""
    if nprocs < 2 or "NCCL_SHM_DISABLE" in env or shm_total >= SHM_MIN_BYTES:
        return {}
    return {"NCCL_SHM_DISABLE": "1"}


def launch(nprocs: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn(*args)` in `nprocs` processes on this machine; rank 0's return value.

    `fn` must be a module-level function (workers are spawned, so it is pickled by name).
    A worker that fails raises torch's ChildFailedError here, naming the rank and its error.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    shm = shm_bytes()
    extra = nccl_env(nprocs, shm, os.environ)
    if extra:  # the workers inherit it
        print(f"/dev/shm is {shm / 2**20:.0f} MiB, under {SHM_MIN_BYTES / 2**20:.0f} MiB: "
              "NCCL_SHM_DISABLE=1 (NCCL's shared-memory transport off)", flush=True)
        os.environ.update(extra)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nprocs,
        run_id=f"fine-tune-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # what `torchrun --standalone` uses: a free local port
        max_restarts=0,  # a restart is Vertex's job (restart_job_on_worker_restart) + resume
        monitor_interval=0.5,
        start_method="spawn",
    )
    results = elastic_launch(config, fn)(*args)
    return results[0]
