"""Inference step: batched generation with the tuned model for a set of prompts.

Prompts are the test split's instructions (with their context) by default, or a JSONL file of
`{"prompt": ...}` objects (local or gs://). Each prediction records its token counts and latency.

    uv run python -m components.inference.infer --model /tmp/adapter \
        --base embedded://tiny-gemma3 --test /tmp/prep/test.jsonl --predictions /tmp/predictions

(`--help` lists every setting of `InferenceConfig`.)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from components.common.config import GenerationConfig, InferenceConfig
from components.common.generation import generate, prompt_text
from components.common.jsonl import Prompt, load_prompts
from components.common.memory import peak_memory
from components.common.progress import Progress
from components.common.results import Predictions
from components.common.serving import chat_messages

# What the CLI may call: the step's public entry points (tests/unit/test_layout.py).
__all__ = ["check", "run_inference"]


def infer(
    adapter_dir: str, prompts: list[Prompt], gen: GenerationConfig, system_prompt: str = "",
    base_ref: str = "", timing: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Predictions for `prompts`. `timing`, when given, receives `load_seconds` (model and
    tokenizer), `generation_seconds` (generate() alone) and the `device`."""
    from components.common.modeling import load_base_and_adapter

    timing = {} if timing is None else timing
    t0 = time.perf_counter()
    model, tokenizer = load_base_and_adapter(adapter_dir, base_ref)
    timing["load_seconds"] = round(time.perf_counter() - t0, 3)
    timing["device"] = next(model.parameters()).device.type
    # The same messages and template the served model gets (`submit predict`, vLLM on Vertex).
    chats = [prompt_text(tokenizer, chat_messages(p, system_prompt)) for p in prompts]
    outs = generate(
        model,
        tokenizer,
        chats,
        max_new_tokens=gen.max_new_tokens,
        batch_size=gen.generation_batch_size,
        temperature=gen.temperature,
        top_p=gen.top_p,
        timing=timing,
        on_batch=Progress("inference", "rows", len(chats)).advance,
    )
    return [
        {
            "prompt": p if isinstance(p, str) else p[-1]["content"],
            # earlier turns, for a prompt that continues a conversation
            **({"messages": p} if not isinstance(p, str) and sum(
                m["role"] != "system" for m in p) > 1 else {}),
            "response": o.text,
            "prompt_tokens": o.prompt_tokens,
            "completion_tokens": o.completion_tokens,
            "latency_s": o.latency_s,
            "first_token_s": o.first_token_s,
            "tokens_per_second": round(o.completion_tokens / o.latency_s, 2) if o.latency_s else 0.0,
        }
        for p, o in zip(prompts, outs, strict=True)
    ]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), `q` in [0, 100]."""
    import numpy as np

    return round(float(np.percentile(values, q)), 4) if values else 0.0


def timing_summary(rows: list[dict[str, Any]], timing: dict[str, Any]) -> dict[str, Any]:
    """Throughput of generation alone (model loading apart) and per-row latency percentiles.

    `seconds` and `tokens_per_second` count generate() only; `load_seconds` is the model load.
    A row's latency runs from its batch's start to its own last token (`generation.py`)."""
    gen_s = float(timing.get("generation_seconds", 0.0))
    completion = sum(r["completion_tokens"] for r in rows)
    latencies = [r["latency_s"] for r in rows]
    return {
        "rows": len(rows),
        "completion_tokens": completion,
        "seconds": round(gen_s, 3),
        "load_seconds": timing.get("load_seconds"),
        "tokens_per_second": round(completion / gen_s, 1) if gen_s else 0.0,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "first_token_p50_s": percentile([r.get("first_token_s", 0.0) for r in rows], 50),
        "device": timing.get("device", ""),
    }


PREDICTIONS_FILE = "predictions.jsonl"
SUMMARY_FILE = "summary.json"


def run_inference(
    cfg: InferenceConfig, *, base: str, test: str, model: str, predictions: str,
    run_id: str = "", required_accelerator: str = "",
) -> dict[str, Predictions]:
    """Generate with base + the adapter in `model` for the test split's prompts or
    `cfg.prompts_uri`. The folder `predictions` gets `predictions.jsonl` and `summary.json`
    (throughput, latency, the step's seconds: on Vertex this step is a custom job, whose artifact
    metadata never reaches the pipeline). Returns that summary as the artifact's metadata.

    Settings and the prompts file are checked before any model is loaded."""
    from components.common.jsonl import read_rows, write_jsonl
    from components.common.modeling import require_accelerator
    from components.common.step import step_run

    require_accelerator(required_accelerator, "inference")
    prompts = load_prompts(cfg.prompts_uri, read_rows(test))
    out = Path(predictions)
    with step_run("inference", cfg, run_id, output_path=predictions) as step:
        tracker = step.tracker
        timing: dict[str, Any] = {}
        rows = infer(model, prompts, cfg, cfg.system_prompt, base, timing=timing)
        write_jsonl(out / PREDICTIONS_FILE, rows)
        meta = {**timing_summary(rows, timing), "generation_batch_size": cfg.generation_batch_size,
                **peak_memory()}
        tracker.summary(meta)
        tracker.log_table(
            "predictions", ["prompt", "response", "completion_tokens", "latency_s"],
            [[r["prompt"], r["response"], r["completion_tokens"], r["latency_s"]] for r in rows],
        )
        tracker.log_reference("predictions", "dataset", str(out), {"rows": len(rows)})
        summary = Predictions(**meta, wandb_url=tracker.url or "", tracking=tracker.report(),
                              step_seconds=step.seconds())
        summary.write(out / SUMMARY_FILE)
        return {"predictions": summary}


def main(argv: list[str] | None = None) -> None:
    from components.common.step import main as step_main

    step_main(run_inference, argv)


if __name__ == "__main__":
    main()


def check(cfg: InferenceConfig) -> None:
    """What the step would refuse minutes in, checked now: its prompts file."""
    if cfg.prompts_uri:
        load_prompts(cfg.prompts_uri, [])
