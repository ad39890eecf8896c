"""KFP component: batched inference. Logic: `components.inference.infer.run_inference`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def inference(
    test: Input[Dataset],
    model: Input[Model],
    prompts_uri: str,
    system_prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    generation_batch_size: int,
    hf_token_secret: str,
    wandb_api_key_secret: str,
    wandb_project: str,
    run_id: str,
    predictions: Output[Dataset],
):
    """Generate answers with the tuned model for the test prompts or a prompts JSONL."""
    import time

    from components.common.secrets import load_secrets
    from components.inference.infer import run_inference

    t0 = time.perf_counter()
    load_secrets(
        {"hf_token_secret": hf_token_secret, "wandb_api_key_secret": wandb_api_key_secret}
    )

    params = {
        "prompts_uri": prompts_uri,
        "system_prompt": system_prompt,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "generation_batch_size": generation_batch_size,
    }
    predictions.metadata.update(run_inference(
        params, test.path, model.path, predictions.path, run_id=run_id, wandb_project=wandb_project
    ))
    predictions.metadata["step_seconds"] = round(time.perf_counter() - t0, 2)
