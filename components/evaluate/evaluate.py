"""Evaluate step: the base model and base + adapter on the test split, side by side.

For each: loss and perplexity on the response tokens (what training optimised) and ROUGE-L of
greedy generations against the references. The adapter is loaded once on top of the base model;
the base numbers come from the same weights with the adapter disabled, so the comparison is exact.

    uv run python -m components.evaluate.evaluate --test /tmp/prep/test.jsonl \
        --adapter /tmp/adapter --base-model embedded://tiny-gemma3 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from components.common.config import GenerationConfig, build
from components.common.errors import InputError
from components.common.generation import generate, prompt_text, response_losses
from components.evaluate.metrics import mean, perplexity, rouge_l, token_weighted_loss


def adapter_base_model(adapter_dir: str) -> str:
    """The base model the adapter was trained on, from the adapter's own training config."""
    cfg_path = Path(adapter_dir) / "training_config.json"
    if not cfg_path.exists():
        raise InputError(f"{adapter_dir} is not a fine-tune output (no training_config.json)")
    return json.loads(cfg_path.read_text())["base_model"]


def load_base_and_adapter(adapter_dir: str) -> tuple[Any, Any]:
    """(PeftModel, tokenizer) with the tokenizer saved next to the adapter."""
    from peft import PeftModel

    from components.common.modeling import bf16_enabled, load_model, load_tokenizer

    base = load_model(adapter_base_model(adapter_dir), bf16=bf16_enabled("auto"))
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    return model, load_tokenizer(adapter_dir, padding_side="left")


def score(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], gen: GenerationConfig
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Loss/perplexity/ROUGE-L of whatever `model` is now, plus per-row details."""
    convs = [r["messages"] for r in rows]
    losses = response_losses(model, tokenizer, convs, batch_size=gen.generation_batch_size)
    outs = generate(
        model,
        tokenizer,
        [prompt_text(tokenizer, m) for m in convs],
        max_new_tokens=gen.max_new_tokens,
        batch_size=gen.generation_batch_size,
        temperature=gen.temperature,
        top_p=gen.top_p,
    )
    rouge = rouge_l([o.text for o in outs], [r["response"] for r in rows])
    loss = token_weighted_loss(losses)
    summary = {"loss": loss, "perplexity": perplexity(loss), "rougeL": mean(rouge)}
    per_row = [
        {"loss": s / max(n, 1), "tokens": n, "generation": o.text, "rougeL": rl}
        for (s, n), o, rl in zip(losses, outs, rouge, strict=True)
    ]
    return summary, per_row


def evaluate(
    adapter_dir: str, rows: list[dict[str, Any]], gen: GenerationConfig
) -> dict[str, Any]:
    """{'base': {...}, 'tuned': {...}, 'rows': [...]} on the given test rows."""
    if not rows:
        raise InputError("the test split is empty; raise test_fraction")
    if gen.eval_max_rows:
        rows = rows[: gen.eval_max_rows]
    model, tokenizer = load_base_and_adapter(adapter_dir)
    results: dict[str, Any] = {}
    details: dict[str, list[dict[str, Any]]] = {}
    for name, ctx in (("base", model.disable_adapter()), ("tuned", nullcontext())):
        t0 = time.perf_counter()
        with ctx:
            results[name], details[name] = score(model, tokenizer, rows, gen)
        results[name]["seconds"] = round(time.perf_counter() - t0, 2)
    results["rows"] = [
        {
            "id": r["id"],
            "category": r["category"],
            "instruction": r["instruction"],
            "reference": r["response"],
            **{f"{k}_{name}": details[name][i][k] for name in details for k in details[name][i]},
        }
        for i, r in enumerate(rows)
    ]
    results["n_rows"] = len(rows)
    return results


def run_evaluate(
    params: dict[str, Any],
    test_path: str,
    adapter_dir: str,
    generations_path: str,
    run_id: str = "",
    wandb_project: str = "",
) -> dict[str, float]:
    """Entry point of the KFP component: writes per-row generations, returns scalar metrics."""
    from components.common.tracking import tracking_run
    from components.prepare_data.prepare import read_rows

    gen: GenerationConfig = build(GenerationConfig, params)
    with tracking_run("evaluate", gen.model_dump(), wandb_project, group=run_id) as tracker:
        results = evaluate(adapter_dir, read_rows(test_path), gen)
        Path(generations_path).parent.mkdir(parents=True, exist_ok=True)
        Path(generations_path).write_text(json.dumps(results, indent=2, ensure_ascii=False))
        scalars = {
            f"{name}_{k}": float(v)
            for name in ("base", "tuned")
            for k, v in results[name].items()
        }
        scalars["test_rows"] = float(results["n_rows"])
        tracker.summary(scalars)
        tracker.log_table(
            "generations",
            ["id", "category", "instruction", "reference", "base", "tuned"],
            [
                [r["id"], r["category"], r["instruction"], r["reference"], r["generation_base"],
                 r["generation_tuned"]]
                for r in results["rows"]
            ],
        )
        return scalars


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate base vs base+adapter on a test split.")
    parser.add_argument("--test", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--out", default="generations.json")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    metrics = run_evaluate(
        {"max_new_tokens": args.max_new_tokens}, args.test, args.adapter, args.out
    )
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
