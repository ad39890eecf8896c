"""KFP component: evaluate base vs tuned. Logic: `components.evaluate.evaluate.run_evaluate`.

The return value feeds the pipeline's registry gate (`dsl.If(ev.outputs["Output"] == True)`): True when the
lower end of the 95% interval of the improvement on the headline metric exceeds `gate_threshold`.
The interval (`improvement_low` / `improvement_high`, metric units, > 0 = tuned better) and
`headline_metric` are in the Metrics and generations artifacts' metadata.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def evaluate(
    test: Input[Dataset],
    model: Input[Model],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    generation_batch_size: int,
    eval_max_rows: int,
    headline_metric: str,
    gate_threshold: float,
    bootstrap_samples: int,
    seed: int,
    wandb_project: str,
    run_id: str,
    hf_token_secret: str,
    wandb_api_key_secret: str,
    metrics: Output[Metrics],
    generations: Output[Artifact],
) -> bool:
    """Per-category loss, perplexity, ROUGE-L and exact match for base and tuned, and the gate.

    Returns `tuned_better`: the lower end of the paired-bootstrap 95% interval of the improvement
    on the headline metric exceeds `gate_threshold`. The model-registry `dsl.If` reads it. (A
    plain bool, not a NamedTuple: kfp.local cannot resolve NamedTuple outputs in a dsl.If; the
    interval itself is in the artifacts' metadata.)
    """
    import json
    import time

    from components.common.secrets import load_secrets
    from components.evaluate.evaluate import run_evaluate

    t0 = time.perf_counter()
    load_secrets({"hf_token_secret": hf_token_secret, "wandb_api_key_secret": wandb_api_key_secret})
    params = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "generation_batch_size": generation_batch_size,
        "eval_max_rows": eval_max_rows,
        "headline_metric": headline_metric,
        "gate_threshold": gate_threshold,
        "bootstrap_samples": bootstrap_samples,
        "seed": seed,
    }
    scalars = run_evaluate(
        params, test.path, model.path, generations.path, run_id=run_id,
        wandb_project=wandb_project,
    )
    for name, value in scalars.items():
        metrics.log_metric(name, value)
    with open(generations.path) as f:
        head = json.load(f)
    h = head["headline"]
    generations.metadata.update({
        "rows": int(scalars["test_rows"]),
        "headline_metric": h["metric"],
        "tuned_better": h["tuned_better"],
        "improvement_low": h["improvement_low"],
        "improvement_high": h["improvement_high"],
        "wandb_url": head.get("wandb_url", ""),
        "step_seconds": round(time.perf_counter() - t0, 2),
    })
    metrics.metadata["wandb_url"] = head.get("wandb_url", "")
    metrics.metadata.update({k: generations.metadata[k] for k in (
        "headline_metric", "tuned_better", "improvement_low", "improvement_high")})
    return bool(h["tuned_better"])
