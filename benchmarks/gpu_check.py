"""One GPU check: everything the README's GPU rows need, measured in one go, into one JSON.

    scripts/gpu_check.sh              # on one GPU, under 8 minutes
    scripts/gpu_check.sh --cpu-smoke  # here: the same keys on CPU, 2-4 minutes

Sections: `lora_1b` (benchmarks/gpu_lora.py, profile default at 1024 tokens: tokens/s, MFU,
peak memory vs the memory arithmetic), `qlora_4b` (the same for 4b-qlora, memory first),
`pipeline` (`submit --local` on the embedded tiny model with bf16 and packing on the GPU: its
steps, the fine-tune's precision, batching and loss head), `generation` (batched greedy
generation of the 1B architecture, random weights, tokens/s)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("lora_1b", "qlora_4b", "pipeline", "generation")
LORA_KEYS = ("tokens_per_s", "mfu", "peak_mem_gib", "planned_gib", "memory_fit",
             "throughput_row", "device")


def lora(profile: str, smoke: bool) -> dict[str, Any]:
    from benchmarks import gpu_lora

    argv = ["--profile", profile] + (["--smoke"] if smoke else [])
    if profile == "default" and not smoke:
        argv += ["--seq-len", "1024"]
    s = gpu_lora.main(argv)
    best = s["best"]
    return {"device": s["device"], "tokens_per_s": best["tokens_per_s"], "mfu": best["mfu"],
            "seq_len": best["seqlen"], "batch": best["batch"], "mode": best["mode"],
            "peak_mem_gib": s["measured_peak_gib"], "planned_gib": s["planned_total_gib"],
            "memory_gb": s["memory_gb"], "memory_fit": s["memory_fit"],
            "throughput_row": s.get("throughput_row")}


def pipeline(smoke: bool, out: Path) -> dict[str, Any]:
    """`submit --local` on the embedded tiny model; on a GPU with bf16 and packing forced."""
    run_id = "gpu-check-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    params = {"trackers": "", "batching": "packed", "bf16": "false" if smoke else "true"}
    if smoke:
        params |= {"max_steps": "4", "max_new_tokens": "8", "eval_max_rows": "10"}
    cmd = [sys.executable, "-c", "from cli.submit import main; main()", "--local",
           "--output-dir", str(out / "runs"), "--run-id", run_id]
    for k, v in params.items():
        cmd += ["--param", f"{k}={v}"]
    t0 = time.perf_counter()
    log = out / "pipeline.log"
    with log.open("w") as sink:
        # its own process group: stopped with every step process it started
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    wall = time.perf_counter() - t0
    summary_path = out / "runs" / run_id / "summary.json"
    if proc.returncode != 0 or not summary_path.is_file():
        return {"status": "failed", "exit_code": proc.returncode, "wall_s": round(wall, 1),
                "log": str(log), "params": params}
    summary = json.loads(summary_path.read_text())
    arts = summary.get("artifacts") or {}
    model = Path(arts.get("fine-tune.model", "/nonexistent"))
    metrics = _json(model / "metrics.json")
    inference = _json(Path(arts.get("inference.predictions", "/nonexistent")).parent
                      / "executor_output.json")
    predictions = ((inference.get("artifacts") or {}).get("predictions") or {}).get("artifacts")
    gen = (predictions or [{}])[0].get("metadata", {})
    return {
        "status": summary.get("status"), "wall_s": round(wall, 1), "params": params,
        "steps_s": {k: v.get("seconds") for k, v in (summary.get("steps") or {}).items()},
        "fine_tune": {
            "device": metrics.get("device"), "bf16": metrics.get("bf16"),
            "batching": _json(model / "training_config.json").get("batching"),
            "loss_head": metrics.get("loss_head"),
            "activation_checkpointing": metrics.get("activation_checkpointing"),
            "tokens_per_s": metrics.get("tokens_per_second"),
            "peak_cuda_allocated_mb": metrics.get("peak_cuda_allocated_mb"),
        },
        "inference": {k: gen.get(k) for k in ("tokens_per_second", "generation_batch_size",
                                              "completion_tokens", "seconds", "device")},
        "eval_loss": {k: (summary.get("eval") or {}).get(k, {}).get("loss")
                      for k in ("base", "tuned")},
        "summary": str(summary_path),
    }


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def generation(smoke: bool, batch: int = 16, prompt_len: int = 128,
               new_tokens: int = 128) -> dict[str, Any]:
    """Batched greedy generation (KV cache) of Gemma 3 1B's architecture, random weights, bf16
    on the GPU; tokens/s counts generated tokens only, prefill included in the time. The smoke
    keeps the real widths and 262k vocabulary (the head is most of a decode step) with one
    decoder layer."""
    import torch
    from transformers import Gemma3ForCausalLM

    from planning.gemma3 import text_config

    device = "cpu" if smoke else "cuda"
    if smoke:
        batch, prompt_len, new_tokens = 4, 16, 8
    config = text_config("google/gemma-3-1b-it", layers=1 if smoke else None)
    torch.manual_seed(0)
    with torch.device(device):
        model = Gemma3ForCausalLM._from_config(
            config, dtype=torch.float32 if smoke else torch.bfloat16).eval()
    ids = torch.randint(3, config.vocab_size, (batch, prompt_len), device=device)
    kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
              "attention_mask": torch.ones_like(ids), "pad_token_id": 0}
    with torch.no_grad():
        model.generate(ids, **{**kwargs, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        if not smoke:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = model.generate(ids, **kwargs)
        if not smoke:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    generated = int((out.shape[1] - prompt_len) * batch)
    return {"tokens_per_s": generated / seconds, "batch": batch, "prompt_len": prompt_len,
            "new_tokens": new_tokens, "seconds": seconds,
            "peak_mem_gib": None if smoke else torch.cuda.max_memory_allocated() / 2**30,
            "params": sum(p.numel() for p in model.parameters()),
            "layers": config.num_hidden_layers, "vocab": config.vocab_size}


def run_section(name: str, smoke: bool, out: Path) -> dict[str, Any]:
    """One section; its failure is recorded, not fatal, so one JSON always comes out."""
    t0 = time.perf_counter()
    try:
        if name == "lora_1b":
            result = lora("default", smoke)
        elif name == "qlora_4b":
            result = lora("4b-qlora", smoke)
        elif name == "pipeline":
            result = pipeline(smoke, out)
        else:
            result = generation(smoke)
        result["ok"] = result.get("status", "succeeded").lower() in ("succeeded", "success")
    except Exception as exc:  # noqa: BLE001 - recorded in the JSON, the next section still runs
        result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    result["section_s"] = round(time.perf_counter() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny configs on CPU: checks the script, measures nothing real")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "gpu-check")
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="run only these sections (repeatable) [all]")
    args = parser.parse_args(argv)
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: use --cpu-smoke")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "mode": "cpu-smoke" if smoke else "gpu",
        "date": dt.date.today().isoformat(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not smoke
        else "cpu",
        "torch": torch.__version__,
        "git_commit": os.environ.get("DOLLY_LORA_IMAGE_COMMIT") or _git_commit(),
    }
    path = args.out / "gpu_check.json"
    # The file is rewritten after each section (a section not reached: ok None), so the time
    # limit that stops the script (SIGTERM, as an exception here) still leaves what was measured.
    signal.signal(signal.SIGTERM, _stop)
    for name in SECTIONS:
        report[name] = {"ok": None, "skipped": bool(args.only and name not in args.only)}
    for name in SECTIONS:
        stopped = None
        if not report[name]["skipped"]:
            try:
                report[name] = run_section(name, smoke, args.out)
            except Stopped as exc:
                report[name], stopped = {"ok": False, "error": str(exc)}, exc
            print(json.dumps({name: report[name]}, default=str), flush=True)
        report["total_s"] = round(time.perf_counter() - t0, 1)
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        if stopped:
            raise SystemExit(124)
    failed = [k for k in SECTIONS if report[k].get("ok") is False]
    print(f"{path}: {report['mode']} on {report['device']}, {report['total_s']} s; "
          + (f"failed: {', '.join(failed)}" if failed else "every section ok"))
    return report


class Stopped(BaseException):  # not an Exception: no section records it and goes on
    """SIGTERM: the script's time limit."""


def _stop(signum: int, frame: Any) -> None:
    raise Stopped("stopped by SIGTERM (the time limit)")


def _git_commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


if __name__ == "__main__":
    done = main()
    sys.exit(1 if any(done[k].get("ok") is False for k in SECTIONS) else 0)
