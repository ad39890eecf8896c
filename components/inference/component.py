"""KFP component: batched inference. Logic: `components.inference.infer.run_inference`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def inference(
    base: Input[Model],
    test: Input[Dataset],
    model: Input[Model],
    prompts_uri: str,
    system_prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    generation_batch_size: int,
    wandb_api_key_secret: str,
    wandb_project: str,
    trackers: str,
    mlflow_tracking_uri: str,
    vertex_experiment: str,
    mlflow_token_secret: str,
    required_accelerator: str,
    predictions: Output[Dataset],
):
    """Generate answers with the tuned model for the test prompts or a prompts JSONL; the
    predictions folder holds predictions.jsonl and summary.json."""
    params = {k: v for k, v in locals().items() if not hasattr(v, "path")}
    from components.common.paths import pipeline_job_name
    from components.common.secrets import load_secrets
    from components.inference.infer import run_inference

    load_secrets({k: params.pop(k) for k in ("wandb_api_key_secret", "mlflow_token_secret")})
    predictions.metadata.update(run_inference(
        params, test.path, model.path, predictions.path, base_ref=base.path,
        run_id=pipeline_job_name(predictions.path), wandb_project=wandb_project,
    ))
