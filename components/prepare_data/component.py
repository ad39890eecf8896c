"""KFP component: prepare data. Logic: `components.prepare_data.prepare.run_prepare`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def prepare_data(
    base: Input[Model],
    dataset: str,
    categories: str,
    val_fraction: float,
    test_fraction: float,
    max_seq_len: int,
    max_bad_row_fraction: float,
    system_prompt: str,
    seed: int,
    wandb_api_key_secret: str,
    wandb_project: str,
    trackers: str,
    mlflow_tracking_uri: str,
    vertex_experiment: str,
    mlflow_token_secret: str,
    train: Output[Dataset],
    validation: Output[Dataset],
    test: Output[Dataset],
    rejected: Output[Dataset],
):
    """Validate, format as chat, filter and split Dolly-format rows (the base model's tokenizer
    measures token lengths)."""
    params = {k: v for k, v in locals().items() if not hasattr(v, "path")}
    import time

    from components.common.paths import pipeline_job_name
    from components.common.secrets import load_secrets
    from components.prepare_data.prepare import run_prepare

    t0 = time.perf_counter()
    load_secrets({k: params.pop(k) for k in ("wandb_api_key_secret", "mlflow_token_secret")})
    params["base_model"] = base.path
    outs = {"train": train, "validation": validation, "test": test, "rejected": rejected}
    stats = run_prepare(params, {name: art.path for name, art in outs.items()},
                        run_id=pipeline_job_name(train.path), wandb_project=wandb_project)
    stats["step_seconds"] = round(time.perf_counter() - t0, 2)
    for name, art in outs.items():
        art.metadata.update({k: v for k, v in stats.items() if k != "categories"})
        art.metadata["rows"] = stats.get(f"{name}_rows", stats["rejected_rows"])
        art.metadata["categories"] = stats["categories"].get(name, {})
