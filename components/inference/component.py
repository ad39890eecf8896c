"""KFP component: batched inference. Logic: `components.inference.infer.run_inference`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.common.component import REQUIRED, StepSpec
from components.common.images import DEFAULT_IMAGE
from components.inference.infer import run_inference

SPEC = StepSpec(
    "inference", run_inference,
    inputs={"base": Model, "test": Dataset, "model": Model},
    outputs={"predictions": Dataset},
    run_id_from="predictions",
    constants={"required_accelerator": (str, REQUIRED)},
    summary="Generate answers with the tuned model for the test prompts or a prompts JSONL; the "
    "predictions folder holds predictions.jsonl and summary.json.",
)


# Generated from the spec(s) above and the config sections by scripts/generate_components.py.
# Edit the specs or InferenceConfig, not what follows.
# Every pipeline build (compile.py, submit --local) rewrites it when stale.
@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def inference(
    base: Input[Model],
    test: Input[Dataset],
    model: Input[Model],
    trackers: str,
    wandb_project: str,
    wandb_api_key_secret: str,
    mlflow_tracking_uri: str,
    mlflow_token_secret: str,
    vertex_experiment: str,
    system_prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    generation_batch_size: int,
    prompts_uri: str,
    required_accelerator: str,
    predictions: Output[Dataset],
):
    """Generate answers with the tuned model for the test prompts or a prompts JSONL; the
    predictions folder holds predictions.jsonl and summary.json.

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
        system_prompt: Optional system message put before every prompt.
        max_new_tokens: Tokens generated per answer.
        temperature: 0 = greedy decoding.
        top_p: Nucleus sampling mass (temperature > 0).
        generation_batch_size: Prompts per generate() call.
        prompts_uri: JSONL of prompts ({'prompt': ...}) for inference ('' = test split).
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.inference.infer import run_inference

    io = StepIO(
        inputs={'base': base, 'test': test, 'model': model},
        outputs={'predictions': predictions},
        run_id_from='predictions',
    )
    return call(run_inference, arguments, io)
