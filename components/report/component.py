"""KFP component: the run report. Logic: `components.report.report.run_report`."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Model, Output

from components.common.component import REQUIRED, StepSpec
from components.common.images import DEFAULT_IMAGE
from components.report.report import run_report

SPEC = StepSpec(
    "report", run_report,
    inputs={"train": Dataset, "validation": Dataset, "test": Dataset, "rejected": Dataset,
            "model": Model, "generations": Artifact, "predictions": Dataset,
            "data_card": Artifact},
    outputs={"html": HTML, "markdown": Markdown},
    input_metadata={"rejected_metadata": "rejected", "model_metadata": "model",
                    "generations_metadata": "generations",
                    "predictions_metadata": "predictions"},
    run_id_from="html",
    constants={"gpu_steps": (str, REQUIRED)},
    optional_inputs={"sweep": Artifact},
    summary="Loss curves, base vs tuned per category with intervals, samples, data, time and cost.",
)


# Generated from the spec(s) above and the config sections by scripts/generate_components.py.
# Edit the specs or ReportConfig, not what follows.
# Every pipeline build (compile.py, submit --local) rewrites it when stale.
@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def report(
    train: Input[Dataset],
    validation: Input[Dataset],
    test: Input[Dataset],
    rejected: Input[Dataset],
    model: Input[Model],
    generations: Input[Artifact],
    predictions: Input[Dataset],
    data_card: Input[Artifact],
    trackers: str,
    wandb_project: str,
    wandb_api_key_secret: str,
    mlflow_tracking_uri: str,
    mlflow_token_secret: str,
    vertex_experiment: str,
    run_name: str,
    cost_estimate: str,
    gpu_hourly_usd: float,
    gpu_steps: str,
    html: Output[HTML],
    markdown: Output[Markdown],
    sweep: Input[Artifact] = None,
):
    """Loss curves, base vs tuned per category with intervals, samples, data, time and cost.

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
        run_name: Stable run name for checkpoints ('' = the pipeline job name). submit --local sets it to
            --run-id, so a rerun finds its checkpoints.
        cost_estimate: The pre-run cost estimate `submit` computed (JSON; '' = none), shown in the report next
            to what the run really took.
        gpu_hourly_usd: Price of one hour of a GPU step's machine, for the cost estimate and the report
            (compiled from the price table for the profile's machine and capacity; set your own
            rate).
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.report.report import run_report

    io = StepIO(
        inputs={
            'train': train,
            'validation': validation,
            'test': test,
            'rejected': rejected,
            'model': model,
            'generations': generations,
            'predictions': predictions,
            'data_card': data_card,
            'sweep': sweep,
        },
        outputs={'html': html, 'markdown': markdown},
        input_metadata={
            'rejected_metadata': 'rejected',
            'model_metadata': 'model',
            'generations_metadata': 'generations',
            'predictions_metadata': 'predictions',
        },
        run_id_from='html',
    )
    return call(run_report, arguments, io)
