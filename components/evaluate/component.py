"""KFP components: evaluate base vs tuned, and the gate that publishes the verdict.

Logic: `components.evaluate.evaluate` (`run_evaluate`, `run_gate`).

`evaluate` runs on the GPU machine (a Vertex custom job there, so it can use Spot capacity like
training) and writes everything into its results file. `gate` is a small CPU step that reads
that file, publishes the Metrics artifact the console shows, and returns `tuned_better` for the
registry's `dsl.If`: True when the lower end of the paired-bootstrap 95% interval of the
improvement on the headline metric exceeds `gate_threshold`. Why two steps: a custom job's
output parameters and artifact metadata do not reach the pipeline; a plain task's do.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.common.component import REQUIRED, StepSpec
from components.common.images import DEFAULT_IMAGE
from components.evaluate.evaluate import run_evaluate, run_gate

EVALUATE = StepSpec(
    "evaluate", run_evaluate,
    inputs={"base": Model, "test": Dataset, "model": Model},
    outputs={"generations": Artifact},
    run_id_from="generations",
    constants={"required_accelerator": (str, REQUIRED)},
    summary="Per-category loss, perplexity, ROUGE-L and exact match for base and tuned, with "
    "the bootstrap interval of the improvement, into one results file.",
)

GATE = StepSpec(
    "gate", run_gate, inputs={"generations": Artifact}, outputs={"metrics": Metrics},
    returns=bool,
    summary="Publish evaluate's numbers as Metrics and return whether the tuned model passes "
    "the gate.",
)


# Generated from the spec(s) above and the config sections by scripts/generate_components.py.
# Edit the specs or EvalConfig, NoParameters, not what follows.
# Every pipeline build (compile.py, submit --local) rewrites it when stale.
@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def evaluate(
    base: Input[Model],
    test: Input[Dataset],
    model: Input[Model],
    trackers: str,
    wandb_project: str,
    wandb_api_key_secret: str,
    mlflow_tracking_uri: str,
    mlflow_token_secret: str,
    vertex_experiment: str,
    seed: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    generation_batch_size: int,
    eval_max_rows: int,
    headline_metric: str,
    gate_threshold: float,
    bootstrap_samples: int,
    gate_min_rows: int,
    required_accelerator: str,
    generations: Output[Artifact],
):
    """Per-category loss, perplexity, ROUGE-L and exact match for base and tuned, with the
    bootstrap interval of the improvement, into one results file.

    Args:
        trackers: Comma-separated trackers every step reports to: wandb, tensorboard, mlflow, vertex ('' =
            none). A tracker that cannot be reached warns once; the step goes on.
        wandb_project: W&B project (key from env/.env only).
        wandb_api_key_secret: Secret Manager name of the W&B API key, '' = env/.env.
        mlflow_tracking_uri: MLflow tracking server URI ('' = the MLFLOW_TRACKING_URI environment variable, else a
            local store next to the run; credentials from env/Secret Manager).
        mlflow_token_secret: Secret Manager name of the MLflow tracking token (MLFLOW_TRACKING_TOKEN), '' = env/.env.
        vertex_experiment: Vertex AI experiment the steps log to with trackers=vertex ('' = dolly-lora); submit
            --experiment sets it.
        seed: Seed for the split, LoRA init and data order.
        max_new_tokens: Tokens generated per answer.
        temperature: 0 = greedy decoding.
        top_p: Nucleus sampling mass (temperature > 0).
        generation_batch_size: Prompts per generate() call.
        eval_max_rows: Evaluate on at most N test rows (0 = all).
        headline_metric: Metric the gate uses: 'loss' (response-token NLL, lower is better) or 'rougeL' (higher
            is better).
        gate_threshold: The tuned model passes the gate when the lower end of the 95% interval of its
            improvement over base on the headline metric exceeds this (metric units).
        bootstrap_samples: Paired bootstrap resamples of the test rows.
        gate_min_rows: Fewest test rows the gate decides on: below it the verdict is 'not enough test rows to
            decide' and nothing is registered (per category: the interval is shown greyed out). Why
            30: docs/evaluation.md.
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.evaluate.evaluate import run_evaluate

    io = StepIO(
        inputs={'base': base, 'test': test, 'model': model},
        outputs={'generations': generations},
        run_id_from='generations',
    )
    return call(run_evaluate, arguments, io)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def gate(
    generations: Input[Artifact],
    metrics: Output[Metrics],
) -> bool:
    """Publish evaluate's numbers as Metrics and return whether the tuned model passes the gate.

    Args:
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.evaluate.evaluate import run_gate

    io = StepIO(
        inputs={'generations': generations},
        outputs={'metrics': metrics},
    )
    return call(run_gate, arguments, io)
