"""Inference step: batched generation with the tuned model for a set of prompts.

Prompts are the test split's instructions (with their context) by default, or a JSONL file of
`{"prompt": ...}` objects (local or gs://). Each prediction records its token counts and latency.

    uv run python -m components.inference.infer --adapter /tmp/adapter \
        --test /tmp/prep/test.jsonl --out /tmp/predictions.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from components.common.config import GenerationConfig, build
from components.common.errors import InputError
from components.common.generation import generate, prompt_text
from components.common.serving import chat_messages
from components.common.storage import read_bytes
from components.prepare_data.dolly import user_content


def load_prompts(prompts_uri: str, test_rows: list[dict[str, Any]]) -> list[str]:
    """User prompts from a JSONL file (field `prompt`), or from the test split when none given."""
    if not prompts_uri:
        return [user_content(r["instruction"], r["context"]) for r in test_rows]
    prompts = []
    text = read_bytes(prompts_uri).decode("utf-8", errors="replace")
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(
                f"{prompts_uri} line {n} is not JSON; give one object per line like "
                '{"prompt": "..."}'
            ) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
            raise InputError(
                f'{prompts_uri} line {n} has no string "prompt" field; write {{"prompt": "..."}}'
            )
        prompts.append(obj["prompt"])
    if not prompts:
        raise InputError(f"{prompts_uri} holds no prompts")
    return prompts


def infer(
    adapter_dir: str, prompts: list[str], gen: GenerationConfig, system_prompt: str = "",
    base_ref: str = "",
) -> list[dict[str, Any]]:
    from components.evaluate.evaluate import load_base_and_adapter

    model, tokenizer = load_base_and_adapter(adapter_dir, base_ref)
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
    )
    return [
        {
            "prompt": p,
            "response": o.text,
            "prompt_tokens": o.prompt_tokens,
            "completion_tokens": o.completion_tokens,
            "latency_s": o.latency_s,
            "tokens_per_second": round(o.completion_tokens / o.latency_s, 2) if o.latency_s else 0.0,
        }
        for p, o in zip(prompts, outs, strict=True)
    ]


PREDICTIONS_FILE = "predictions.jsonl"
SUMMARY_FILE = "summary.json"


def run_inference(
    params: dict[str, Any], test_path: str, adapter_dir: str, predictions_dir: str,
    run_id: str = "", wandb_project: str = "", base_ref: str = "",
) -> dict[str, Any]:
    """Entry point of the KFP component: `predictions_dir` gets `predictions.jsonl` and
    `summary.json` (throughput, latency, the step's seconds: on Vertex this step is a custom job,
    whose artifact metadata never reaches the pipeline). Returns that summary.

    Settings and the prompts file are checked before any model is loaded."""
    from components.common.modeling import require_accelerator
    from components.common.tracking import tracking_run
    from components.prepare_data.prepare import read_rows, write_jsonl

    start = time.perf_counter()
    gen: GenerationConfig = build(GenerationConfig, params)
    require_accelerator(params.get("required_accelerator", ""), "inference")
    prompts = load_prompts(params.get("prompts_uri", ""), read_rows(test_path))
    config = {**gen.model_dump(), "prompts_uri": params.get("prompts_uri", "")}
    out = Path(predictions_dir)
    with tracking_run("inference", config, wandb_project, group=run_id) as tracker:
        t0 = time.perf_counter()
        rows = infer(adapter_dir, prompts, gen, params.get("system_prompt", ""), base_ref)
        seconds = time.perf_counter() - t0
        write_jsonl(out / PREDICTIONS_FILE, rows)
        completion = sum(r["completion_tokens"] for r in rows)
        latencies = sorted(r["latency_s"] for r in rows)
        meta = {
            "rows": len(rows),
            "completion_tokens": completion,
            "seconds": round(seconds, 3),
            "tokens_per_second": round(completion / seconds, 1) if seconds else 0.0,
            "generation_batch_size": gen.generation_batch_size,
            "latency_p50_s": latencies[len(latencies) // 2],
            "latency_p95_s": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        }
        tracker.summary(meta)
        tracker.log_table(
            "predictions", ["prompt", "response", "completion_tokens", "latency_s"],
            [[r["prompt"], r["response"], r["completion_tokens"], r["latency_s"]] for r in rows],
        )
        tracker.log_reference("predictions", "dataset", str(out), {"rows": len(rows)})
        meta.update(wandb_url=tracker.url or "", step_seconds=round(time.perf_counter() - start, 2))
        (out / SUMMARY_FILE).write_text(json.dumps(meta, indent=2))
        return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate with a tuned adapter.")
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--prompts", default="")
    parser.add_argument("--out", default="predictions", help="folder for predictions.jsonl")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    params = {"max_new_tokens": args.max_new_tokens, "prompts_uri": args.prompts}
    print(json.dumps(run_inference(params, args.test, args.adapter, args.out), indent=2))


if __name__ == "__main__":
    main()
