"""KFP component: prepare data. Logic: `components.prepare_data.prepare.run_prepare`."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def prepare_data(
    dataset: str,
    base_model: str,
    categories: str,
    val_fraction: float,
    test_fraction: float,
    max_seq_len: int,
    max_bad_row_fraction: float,
    system_prompt: str,
    seed: int,
    hf_token_secret: str,
    wandb_api_key_secret: str,
    wandb_project: str,
    run_id: str,
    train: Output[Dataset],
    validation: Output[Dataset],
    test: Output[Dataset],
    rejected: Output[Dataset],
):
    """Validate, format as chat, filter and split Dolly-format rows."""
    params = dict(locals())
    import time

    from components.common.secrets import load_secrets
    from components.prepare_data.prepare import run_prepare

    t0 = time.perf_counter()
    load_secrets({k: params.pop(k) for k in ("hf_token_secret", "wandb_api_key_secret")})
    outs = {"train": train, "validation": validation, "test": test, "rejected": rejected}
    stats = run_prepare(params, {name: art.path for name, art in outs.items()}, run_id=run_id,
                        wandb_project=wandb_project)
    stats["step_seconds"] = round(time.perf_counter() - t0, 2)
    for name, art in outs.items():
        art.metadata.update({k: v for k, v in stats.items() if k != "categories"})
        art.metadata["rows"] = stats.get(f"{name}_rows", stats["rejected_rows"])
        art.metadata["categories"] = stats["categories"].get(name, {})
