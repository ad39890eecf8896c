"""The container's main process: runs kfp's executor in a child, passes signals on, and says in one
line when the step ran out of memory.

Why a parent: the OOM killer ends a process with SIGKILL, which only its parent can see and
report. And the kernel drops signals PID 1 does not handle, so SIGTERM (preemption, cancel) and
SIGHUP are forwarded to the child; SIGINT already reaches it from the terminal's process group,
so it is ignored here. The module to run comes first on the command line, so the command still
names kfp's executor (kfp.local recognises a lightweight component by it). Standard library only.
"""

from __future__ import annotations

import os
import resource
import runpy
import signal
import subprocess
import sys
from types import FrameType

CHILD = "--step-process"  # argv[0] of the child: run the module here, in this process
OOM_EXIT = 137  # what a shell reports for a SIGKILLed process: retried like one
# The settings that lower each step's peak, by the function a component executes.
LOWER_IT = {
    "fine_tune": "per_device_train_batch_size (raise gradient_accumulation_steps to keep the "
                 "global batch) or max_seq_len",
    "evaluate": "generation_batch_size, eval_max_rows or max_seq_len",
    "inference": "generation_batch_size or max_new_tokens",
    "export": "the machine: export holds the merged model in memory (a smaller base_model)",
}


_stopping = False


def terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP -> SystemExit(128 + signum), the exit status of a process ended by it. A
    terminal's SIGHUP reaches the step twice (from the terminal and from its supervisor): the
    second one must not interrupt the clean-up the first one started."""
    global _stopping
    if _stopping:
        return
    _stopping = True
    print(f"{signal.Signals(signum).name}: stopping the step", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def step_of(argv: list[str]) -> str:
    """The function the executor runs (`--function_to_execute NAME`), '' if none."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "--function_to_execute":
            return argv[i + 1]
    return ""


def out_of_memory_line(function: str, peak_mb: float | None, how: str) -> str:
    """The one line a person reads: which step, that memory ran out, its peak, what lowers it."""
    step = function.replace("_", "-") or "the step"
    peak = f", peak {peak_mb / 1024:.1f} GiB" if peak_mb else ""
    lower = LOWER_IT.get(function, "the batch size or the sequence length")
    return f"{step}: out of memory ({how}{peak}); lower {lower}"


def oom_kills() -> int | None:
    """The kernel's count of OOM kills since boot (/proc/vmstat), None where it has none."""
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def supervise(argv: list[str]) -> int:
    """Run the step as a child; its exit status, with the out-of-memory line after a SIGKILL."""
    before = oom_kills()
    child = subprocess.Popen([sys.executable, "-m", "components.common.entrypoint", CHILD,
                              str(os.getpid()), *argv])

    def forward(signum: int, frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = child.wait()
    if code == -signal.SIGKILL:
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        after = oom_kills()
        how = ("killed by the kernel's OOM killer" if before is not None and after is not None
               and after > before else "killed by SIGKILL, as the kernel's OOM killer does")
        print(out_of_memory_line(step_of(argv), peak, how + ", resident memory"),
              file=sys.stderr, flush=True)
        return OOM_EXIT
    return 128 - code if code < 0 else code


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's CUDA OutOfMemoryError, a MemoryError, or the CPU allocator's failure, anywhere in
    the exception's chain."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
            return True
        if isinstance(e, RuntimeError) and ("out of memory" in str(e)
                                            or "can't allocate memory" in str(e)):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC error anywhere in the exception's chain, if there is one."""
    import errno

    e: BaseException | None = exc
    for _ in range(20):
        if e is None:
            return None
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e
        e = e.__cause__ or e.__context__
    return None


def end_with_parent(parent: int) -> None:
    """SIGTERM to this process when its parent dies (Linux `PR_SET_PDEATHSIG`): the step never
    outlives the process that reports on it."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the parent's own signal handling is all there is
    if os.getppid() != parent:  # the parent died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def run_step(parent: int, argv: list[str]) -> None:
    """The child: kfp's executor in this process, SIGTERM as SystemExit, and the one line on
    an out-of-memory error (after its traceback, which stays in the log)."""
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    end_with_parent(parent)
    module, sys.argv = argv[0], [argv[0], *argv[1:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except BaseException as exc:
        if (full := disk_full(exc)) is not None:
            import traceback

            traceback.print_exc()
            where = f" writing {full.filename}" if full.filename else ""
            print(f"{step_of(argv).replace('_', '-') or 'the step'}: disk full{where}",
                  file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        if not is_out_of_memory(exc):
            raise
        import traceback

        from components.common.memory import peak_memory

        traceback.print_exc()
        peak = peak_memory()
        cuda = "peak_cuda_allocated_mb" in peak
        print(out_of_memory_line(
            step_of(argv), peak.get("peak_cuda_allocated_mb") or peak["peak_rss_mb"],
            "CUDA, allocated" if cuda else type(exc).__name__ + ", resident memory"),
            file=sys.stderr, flush=True)
        raise SystemExit(OOM_EXIT) from None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CHILD]:  # CHILD, the parent's pid, the module and its arguments
        run_step(int(argv[1]), argv[2:])
        return
    if not argv:
        raise SystemExit("usage: python -m components.common.entrypoint MODULE [ARGS...]")
    sys.stdout.flush()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")  # the child's lines reach the log in order
    raise SystemExit(supervise(argv))


if __name__ == "__main__":
    main()
