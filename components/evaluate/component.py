"""KFP component: evaluate base vs tuned. Logic: `components.evaluate.evaluate.run_evaluate`."""

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
    wandb_project: str,
    run_id: str,
    hf_token_secret: str,
    wandb_api_key_secret: str,
    metrics: Output[Metrics],
    generations: Output[Artifact],
) -> bool:
    """Loss, perplexity and ROUGE-L on the test split for the base and the tuned model.

    Returns whether the tuned model beats the base on test loss: the model-registry gate. (A
    plain bool, not a NamedTuple: kfp.local cannot resolve NamedTuple outputs in a dsl.If.)
    """
    from components.common.secrets import load_secrets
    from components.evaluate.evaluate import run_evaluate

    load_secrets({"hf_token_secret": hf_token_secret, "wandb_api_key_secret": wandb_api_key_secret})

    params = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "generation_batch_size": generation_batch_size,
        "eval_max_rows": eval_max_rows,
    }
    scalars = run_evaluate(
        params, test.path, model.path, generations.path, run_id=run_id,
        wandb_project=wandb_project,
    )
    for name, value in scalars.items():
        metrics.log_metric(name, value)
    generations.metadata["rows"] = int(scalars["test_rows"])
    # Gate for the model registry (pipelines/lora_pipeline.py): tuned must beat base on test loss.
    return bool(scalars["tuned_loss"] < scalars["base_loss"])
