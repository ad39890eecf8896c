"""KFP components: evaluate base vs tuned, and the gate that publishes the verdict.

Logic: `components.evaluate.evaluate` (`run_evaluate`, `gate_decision`).

`evaluate` runs on the GPU machine (a Vertex custom job there, so it can use Spot capacity like
training) and writes everything into its results file. `gate` is a small CPU step that reads
that file, publishes the Metrics artifact the console shows, and returns `tuned_better` for the
registry's `dsl.If`: True when the lower end of the paired-bootstrap 95% interval of the
improvement on the headline metric exceeds `gate_threshold`. Why two steps: a custom job's
output parameters and artifact metadata do not reach the pipeline; a plain task's do.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def evaluate(
    base: Input[Model],
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
    wandb_api_key_secret: str,
    trackers: str,
    mlflow_tracking_uri: str,
    vertex_experiment: str,
    mlflow_token_secret: str,
    required_accelerator: str,
    generations: Output[Artifact],
):
    """Per-category loss, perplexity, ROUGE-L and exact match for base and tuned, with the
    bootstrap interval of the improvement, into one results file."""
    params = {k: v for k, v in locals().items() if not hasattr(v, "path")}
    from components.common.paths import pipeline_job_name
    from components.common.secrets import load_secrets
    from components.evaluate.evaluate import run_evaluate

    load_secrets({k: params.pop(k) for k in ("wandb_api_key_secret", "mlflow_token_secret")})
    scalars = run_evaluate(
        params, test.path, model.path, generations.path, base_ref=base.path,
        run_id=pipeline_job_name(generations.path), wandb_project=wandb_project,
    )
    generations.metadata.update({"rows": int(scalars["test_rows"]),
                                 "tuned_better": bool(scalars["tuned_better"])})
    from components.evaluate.evaluate import tracking_report

    generations.metadata["tracking"] = tracking_report(generations.path)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def gate(generations: Input[Artifact], metrics: Output[Metrics]) -> bool:
    """Publish evaluate's numbers as Metrics and return whether the tuned model passes the gate.

    (A plain bool, not a NamedTuple: kfp.local cannot resolve NamedTuple outputs in a dsl.If;
    the interval is in the Metrics artifact's metadata.)"""
    from components.evaluate.evaluate import gate_decision

    scalars, decision = gate_decision(generations.path)
    for name, value in scalars.items():
        metrics.log_metric(name, value)
    metrics.metadata.update(decision)
    return decision["tuned_better"]
