"""KFP component: the run report (HTML for the Vertex console, Markdown for a quick read).

Logic: `components.report.report`. Runs on a small CPU machine after evaluate and inference.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def report(
    train: Input[Dataset],
    validation: Input[Dataset],
    test: Input[Dataset],
    rejected: Input[Dataset],
    model: Input[Model],
    generations: Input[Artifact],
    predictions: Input[Dataset],
    gpu_hourly_usd: float,
    cost_estimate: str,
    wandb_project: str,
    wandb_api_key_secret: str,
    html: Output[HTML],
    markdown: Output[Markdown],
):
    """Loss curves, base vs tuned per category with intervals, samples, data, time and cost."""
    from components.common.paths import pipeline_job_name
    from components.common.secrets import load_secrets
    from components.report.report import collect, write_report

    load_secrets({"wandb_api_key_secret": wandb_api_key_secret})
    run_id = pipeline_job_name(html.path)

    data = collect(
        splits={"train": train.path, "validation": validation.path, "test": test.path,
                "rejected": rejected.path},
        split_meta=dict(rejected.metadata),
        model_dir=model.path,
        model_meta=dict(model.metadata),
        eval_path=generations.path,
        eval_meta=dict(generations.metadata),
        predictions_path=predictions.path,
        predictions_meta=dict(predictions.metadata),
        gpu_hourly_usd=gpu_hourly_usd,
        run_id=run_id,
        cost_estimate=cost_estimate,
    )
    write_report(data, html.path, markdown.path)
    from pathlib import Path

    from components.common.tracking import tracking_run

    with tracking_run("report", {"gpu_hourly_usd": gpu_hourly_usd}, wandb_project,
                      group=run_id) as tracker:
        tracker.log_html("report", Path(html.path).read_text(encoding="utf-8"))
        tracker.summary({"gpu_cost_usd": data["cost"]["gpu_cost_usd"],
                         "pipeline_seconds": data["cost"]["total_seconds"]})
        for art in (html, markdown):
            art.metadata["wandb_url"] = tracker.url or ""
    html.metadata["tuned_better"] = bool(data["headline"].get("tuned_better", False))
