"""KFP component: prepare data. Logic: `components.prepare_data.prepare.run_prepare`."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.common.component import REQUIRED, StepSpec
from components.common.images import DEFAULT_IMAGE
from components.prepare_data.data_key import run_data_key
from components.prepare_data.prepare import run_prepare

DATA_KEY = StepSpec(
    "data_key", run_data_key, constants={"dataset": (str, REQUIRED)}, returns=str,
    summary="The dataset's content key (GCS MD5, file SHA-256, hub commit): prepare-data's "
    "cache key changes exactly when the data does. Runs with caching off.",
)

SPEC = StepSpec(
    "prepare_data", run_prepare,
    inputs={"base": Model},
    outputs={"train": Dataset, "validation": Dataset, "test": Dataset, "rejected": Dataset,
             "data_card": Artifact},
    config_from_inputs={"base_model": "base"},
    run_id_from="train",
    constants={"data_key": (str, "")},
    summary="Read instruction data (Dolly, Alpaca, chat messages, prompt/completion), validate, "
    "format as chat, filter, split, and write the data card (the base model's tokenizer "
    "measures token lengths).",
)


# Generated from the spec(s) above and the config sections by scripts/generate_components.py.
# Edit the specs or DataConfig, NoParameters, not what follows.
# Every pipeline build (compile.py, submit --local) rewrites it when stale.
@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def data_key(
    dataset: str,
) -> str:
    """The dataset's content key (GCS MD5, file SHA-256, hub commit): prepare-data's cache key
    changes exactly when the data does. Runs with caching off.

    Args:
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.prepare_data.data_key import run_data_key

    io = StepIO(
        inputs={},
        outputs={},
    )
    return call(run_data_key, arguments, io)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def prepare_data(
    base: Input[Model],
    trackers: str,
    wandb_project: str,
    wandb_api_key_secret: str,
    mlflow_tracking_uri: str,
    mlflow_token_secret: str,
    vertex_experiment: str,
    system_prompt: str,
    seed: int,
    max_seq_len: int,
    dataset: str,
    data_format: str,
    columns: str,
    dataset_split: str,
    dataset_config: str,
    dataset_revision: str,
    categories: str,
    val_fraction: float,
    test_fraction: float,
    max_bad_row_fraction: float,
    drop_test_overlap: bool,
    near_duplicate_threshold: float,
    train: Output[Dataset],
    validation: Output[Dataset],
    test: Output[Dataset],
    rejected: Output[Dataset],
    data_card: Output[Artifact],
    data_key: str = '',
):
    """Read instruction data (Dolly, Alpaca, chat messages, prompt/completion), validate, format as
    chat, filter, split, and write the data card (the base model's tokenizer measures token
    lengths).

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
        seed: Seed for the split, LoRA init and data order.
        max_seq_len: Longest prompt+response in tokens; longer rows drop.
        dataset: Hugging Face dataset id, or a local or gs:// file (JSONL, .jsonl.gz, JSON array,
            Parquet, CSV), folder or glob of shards; embedded://dolly-15k-sample.jsonl
        data_format: Row format ('auto' = detected from the fields; a mix is refused).
        columns: Rename fields, name:column,... (e.g. instruction:question,response:answer).
        dataset_split: Split of a Hugging Face dataset.
        dataset_config: Configuration (subset) of a Hugging Face dataset.
        dataset_revision: Hub dataset revision ('' = the newest, pinned to its commit when read).
        categories: Comma-separated categories to keep ('' = all).
        val_fraction: Share of rows for validation.
        test_fraction: Share of rows for test.
        max_bad_row_fraction: Malformed rows are skipped and counted up to this share; above it the step fails.
        drop_test_overlap: Drop test rows that copy a training row (same prompt or near copy).
        near_duplicate_threshold: MinHash Jaccard similarity at which rows count as near copies.
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.prepare_data.prepare import run_prepare

    io = StepIO(
        inputs={'base': base},
        outputs={
            'train': train,
            'validation': validation,
            'test': test,
            'rejected': rejected,
            'data_card': data_card,
        },
        config_from_inputs={'base_model': 'base'},
        run_id_from='train',
    )
    return call(run_prepare, arguments, io)
