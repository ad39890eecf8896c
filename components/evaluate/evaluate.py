"""Evaluate step: the base model and base + adapter on the test split, side by side.

For each: loss and perplexity on the response tokens (what training optimised), ROUGE-L of
greedy generations against the references and, for short-answer categories, exact match; overall
and per Dolly category. The adapter is loaded once on top of the base model; the base numbers come
from the same weights with the adapter disabled, so the comparison is exact. A paired bootstrap
over the test rows (`bootstrap.py`) turns "tuned minus base" into a 95% interval, and the gate
decision (`tuned_better`) is made from that interval, not from one number.

    uv run python -m components.evaluate.evaluate --test /tmp/prep/test.jsonl \
        --model /tmp/adapter --base embedded://tiny-gemma3 --generations /tmp/generations.json \
        --max_new_tokens 32

(`--help` lists every setting of `EvalConfig`.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from typing import Any

from components.common.bootstrap import paired_bootstrap
from components.common.config import HEADLINE_METRICS, EvalConfig, GenerationConfig, NoParameters
from components.common.errors import InputError
from components.common.generation import generate, prompt_text, response_losses
from components.common.modeling import load_base_and_adapter
from components.common.progress import Progress
from components.common.results import (
    CategoryResult,
    EvaluatedArtifact,
    Evaluation,
    GateVerdict,
    Interval,
    Scores,
)
from components.common.step import StepResult
from components.evaluate.metrics import (
    EXACT_MATCH_CATEGORIES,
    exact_match,
    mean,
    perplexity,
    rouge_l,
    token_weighted_loss,
)


def score(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], gen: GenerationConfig,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[Scores, list[dict[str, Any]]]:
    """Loss/perplexity/ROUGE-L of whatever `model` is now, plus per-row details."""
    convs = [r["messages"] for r in rows]
    losses = response_losses(model, tokenizer, convs, batch_size=gen.generation_batch_size)
    t0 = time.perf_counter()
    outs = generate(
        model,
        tokenizer,
        [prompt_text(tokenizer, m) for m in convs],
        max_new_tokens=gen.max_new_tokens,
        batch_size=gen.generation_batch_size,
        temperature=gen.temperature,
        top_p=gen.top_p,
        on_batch=on_batch,
    )
    gen_s = time.perf_counter() - t0
    rouge = rouge_l([o.text for o in outs], [r["response"] for r in rows])
    per_row = [
        {
            "loss": s / max(n, 1),
            "tokens": n,
            "generation": o.text,
            "rougeL": rl,
            "latency_s": o.latency_s,
            "completion_tokens": o.completion_tokens,
            **(
                {"exact_match": exact_match(o.text, r["response"])}
                if r["category"] in EXACT_MATCH_CATEGORIES
                else {}
            ),
        }
        for (s, n), o, rl, r in zip(losses, outs, rouge, rows, strict=True)
    ]
    summary = aggregate(per_row)
    summary.generation_tokens_per_second = (
        sum(o.completion_tokens for o in outs) / gen_s if gen_s else 0.0
    )
    return summary, per_row


def aggregate(per_row: list[dict[str, Any]]) -> Scores:
    """Token-weighted loss, perplexity, mean ROUGE-L and (where scored) exact match."""
    loss = token_weighted_loss([(r["loss"] * r["tokens"], r["tokens"]) for r in per_row])
    em = [r["exact_match"] for r in per_row if "exact_match" in r]
    return Scores(loss=loss, perplexity=perplexity(loss),
                  rougeL=mean([r["rougeL"] for r in per_row]), exact_match=mean(em) if em else None)


def headline_values(rows: list[dict[str, Any]], metric: str, model: str) -> tuple[list[float], list[float]]:
    """Per-row values of the headline metric and their weights (tokens for loss, 1 otherwise)."""
    values = [float(r[f"{metric}_{model}"]) for r in rows]
    weights = [float(r[f"tokens_{model}"]) for r in rows] if metric == "loss" else [1.0] * len(rows)
    return values, weights


def compare(rows: list[dict[str, Any]], cfg: EvalConfig, seed: int = 0) -> Interval:
    """Headline verdict over `rows`: the bootstrap of tuned − base, oriented as improvement
    (> 0 means tuned is better), and the gate's decision from its lower end."""
    metric = cfg.headline_metric
    higher = HEADLINE_METRICS[metric]["higher_is_better"]
    base, w = headline_values(rows, metric, "base")
    tuned, _ = headline_values(rows, metric, "tuned")
    iv = paired_bootstrap(base, tuned, weights=w, samples=cfg.bootstrap_samples, seed=seed)
    sign = 1.0 if higher else -1.0
    lo, hi = sorted((sign * iv.low, sign * iv.high))
    enough = iv.rows >= cfg.gate_min_rows
    return Interval(
        metric=metric, higher_is_better=higher, improvement=sign * iv.estimate,
        improvement_low=lo, improvement_high=hi, threshold=cfg.gate_threshold,
        # Below gate_min_rows no decision is made, so nothing is registered.
        min_rows=cfg.gate_min_rows, enough_rows=enough,
        tuned_better=bool(enough and lo > cfg.gate_threshold),
        confidence=iv.confidence, samples=iv.samples, rows=iv.rows,
    )


def by_category(rows: list[dict[str, Any]], cfg: EvalConfig,
                seed: int = 0) -> dict[str, CategoryResult]:
    """Per Dolly category: rows, base and tuned metrics, and the headline interval."""
    out: dict[str, CategoryResult] = {}
    for cat in sorted({r["category"] for r in rows}):
        sub = [r for r in rows if r["category"] == cat]
        scores = {
            m: aggregate([{k.removesuffix(f"_{m}"): v for k, v in r.items() if k.endswith(f"_{m}")}
                          for r in sub])
            for m in ("base", "tuned")
        }
        out[cat] = CategoryResult(rows=len(sub), base=scores["base"], tuned=scores["tuned"],
                                  headline=compare(sub, cfg, seed))
    return out


def evaluate(
    adapter_dir: str, rows: list[dict[str, Any]], gen: GenerationConfig, seed: int = 0,
    base_ref: str = "",
) -> Evaluation:
    """Base and tuned, overall and per category, with the headline interval, on `rows`."""
    cfg = gen if isinstance(gen, EvalConfig) else EvalConfig(**gen.model_dump())
    if not rows:
        raise InputError("the test split is empty; raise test_fraction")
    if cfg.eval_max_rows:
        rows = rows[: cfg.eval_max_rows]
    model, tokenizer = load_base_and_adapter(adapter_dir, base_ref)
    scores: dict[str, Scores] = {}
    details: dict[str, list[dict[str, Any]]] = {}
    progress = Progress("evaluate", "rows", 2 * len(rows))  # base's rows, then tuned's
    for name, ctx in (("base", model.disable_adapter()), ("tuned", nullcontext())):
        t0 = time.perf_counter()
        with ctx:
            scores[name], details[name] = score(
                model, tokenizer, rows, gen, partial(progress.advance, note=f"{name} model"))
        scores[name].seconds = round(time.perf_counter() - t0, 2)
    per_row = [
        {
            "id": r["id"],
            "category": r["category"],
            "instruction": r["instruction"],
            "context": r.get("context", ""),
            "reference": r["response"],
            **{f"{k}_{name}": details[name][i][k] for name in details for k in details[name][i]},
        }
        for i, r in enumerate(rows)
    ]
    return Evaluation(
        base=scores["base"], tuned=scores["tuned"], rows=per_row, n_rows=len(rows),
        # Where it ran, so the report prices GPU time only when a GPU was used.
        device=next(model.parameters()).device.type,
        categories=by_category(per_row, cfg, seed), headline=compare(per_row, cfg, seed),
        config=cfg.model_dump(exclude={"wandb_api_key_secret"}),
    )


def run_evaluate(
    cfg: EvalConfig, *, base: str, test: str, model: str, generations: str, run_id: str = "",
    required_accelerator: str = "",
) -> dict[str, EvaluatedArtifact]:
    """Base (`base`, the fetched folder or any model reference) vs base + the adapter in
    `model` on the `test` split. Writes the results (per-row generations, metrics, the headline
    interval, the step's seconds) to the file `generations` and returns its metadata.

    Everything later steps need is in that file: on Vertex this step is a custom job, whose
    artifact metadata never reaches the pipeline (`gate` publishes the Metrics artifact)."""
    from components.common.jsonl import read_rows
    from components.common.memory import peak_memory
    from components.common.modeling import require_accelerator
    from components.common.step import step_run

    require_accelerator(required_accelerator, "evaluate")
    rows = read_rows(test)
    with step_run("evaluate", cfg, run_id, output_path=generations) as step:
        tracker = step.tracker
        results = evaluate(model, rows, cfg, seed=cfg.seed, base_ref=base)
        results.wandb_url, results.tracking = tracker.url or "", tracker.report()
        results.step_seconds = step.seconds()
        peak = peak_memory()  # in the file too: a custom job's metadata is lost
        results.peak_rss_mb = peak.get("peak_rss_mb")
        results.peak_cuda_allocated_mb = peak.get("peak_cuda_allocated_mb")
        results.write(generations)
        scalars = {**results.scalars(), **peak}
        tracker.log(scalars)
        tracker.summary(scalars)
        tracker.log_table(
            "generations",
            ["id", "category", "instruction", "reference", "base", "tuned", "rougeL_base",
             "rougeL_tuned", "loss_base", "loss_tuned"],
            [
                [r["id"], r["category"], r["instruction"], r["reference"], r["generation_base"],
                 r["generation_tuned"], r["rougeL_base"], r["rougeL_tuned"], r["loss_base"],
                 r["loss_tuned"]]
                for r in results.rows
            ],
        )
        tracker.log_table(
            "categories",
            ["category", "rows", "loss_base", "loss_tuned", "rougeL_base", "rougeL_tuned",
             "improvement", "improvement_low", "improvement_high"],
            [
                [cat, c.rows, c.base.loss, c.tuned.loss, c.base.rougeL, c.tuned.rougeL,
                 c.headline.improvement, c.headline.improvement_low, c.headline.improvement_high]
                for cat, c in results.categories.items()
            ],
        )
        return {"generations": EvaluatedArtifact(
            rows=results.n_rows, tuned_better=results.headline.tuned_better,
            tracking=results.tracking, wandb_url=results.wandb_url,
            step_seconds=results.step_seconds)}


def gate_decision(generations_path: str) -> GateVerdict:
    """The gate's verdict and every scalar, from evaluate's results file."""
    return GateVerdict.of(Evaluation.load(generations_path))


def run_gate(cfg: NoParameters, *, generations: str, metrics: str) -> StepResult:
    """Publish evaluate's numbers as the Metrics artifact and return whether the tuned model
    passes the gate (a plain bool: kfp.local cannot resolve NamedTuple outputs in a dsl.If; the
    interval is in the Metrics artifact's metadata)."""
    verdict = gate_decision(generations)
    return StepResult(metadata={"metrics": verdict}, value=verdict.tuned_better)


def main(argv: list[str] | None = None) -> None:
    from components.common.step import main as step_main

    step_main(run_evaluate, argv)


if __name__ == "__main__":
    main()
