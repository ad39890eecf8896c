"""Typed configuration: every pipeline parameter, its default, its help text and its checks.

Why here: defaults live in one place. The pipeline signature (`pipelines/lora_pipeline.py`) reads
its defaults from these models, the CLI validates `--param` overrides against them before anything
runs, and each step rebuilds the part it needs from its own arguments and checks it again, so bad
input stops before any GPU time is spent. The defaults are the real job: Gemma 3 1B instruct,
LoRA on Dolly-15k, one NVIDIA L4.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from components.common.errors import validation_error
from components.common.serving import VLLM_SERVING_IMAGE

DOLLY_CATEGORIES: tuple[str, ...] = (
    "brainstorming",
    "classification",
    "closed_qa",
    "creative_writing",
    "general_qa",
    "information_extraction",
    "open_qa",
    "summarization",
)


def normalize_category(name: str) -> str:
    """`"Closed_QA"`, `" closed-qa "`, `"Closed QA"` -> `"closed_qa"`: Dolly's spelling.

    Why: the category decides per-category metrics, exact match and `categories=` selection; a
    mis-cased copy of a Dolly category must count as that category, not as a new one."""
    return re.sub(r"[\s-]+", "_", name.strip()).lower()


def split_csv(value: str) -> list[str]:
    """`"a, b,,c"` -> `["a", "b", "c"]`: list-valued parameters travel as comma-separated strings
    so they stay plain `str` pipeline parameters (easy to pass with `--param`)."""
    return [v.strip() for v in value.split(",") if v.strip()]


def _secret_name(value: str) -> str:
    from components.common.secrets import check_secret_name  # (imports this module)

    return check_secret_name(value)


# A Secret Manager resource name, never a value: checked wherever such a field is declared.
SecretName = Annotated[str, AfterValidator(_secret_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class NoParameters(_Strict):
    """The section of a step that takes no pipeline parameter (the gate)."""


class BaseModelField(_Strict):
    base_model: str = Field(
        "google/gemma-3-1b-it",
        description="Hugging Face model id, local folder, gs:// folder or embedded://tiny-gemma3.",
    )


class SeqLenField(_Strict):
    max_seq_len: int = Field(
        1024, ge=16, le=32768, description="Longest prompt+response in tokens; longer rows drop."
    )


class SeedField(_Strict):
    seed: int = Field(42, ge=0, description="Seed for the split, LoRA init and data order.")


class SystemPromptField(_Strict):
    system_prompt: str = Field("", description="Optional system message put before every prompt.")


class RunNameField(_Strict):
    run_name: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Stable run name for checkpoints ('' = the pipeline job "
        "name). submit --local sets it to --run-id, so a rerun finds its checkpoints.",
    )


TRACKERS: tuple[str, ...] = ("wandb", "tensorboard", "mlflow", "vertex")
VERTEX_EXPERIMENT = r"^[a-z0-9][a-z0-9-]{0,127}$"


class TrackingConfig(_Strict):
    """Where each step reports the run: any of W&B, TensorBoard, MLflow, Vertex AI Experiments.
    Every tracked step's section includes these fields.

    Why a choice: many teams have no W&B licence and watch runs in Vertex Experiments / Vertex
    TensorBoard or an MLflow server. Credentials never travel here: they come from the
    environment or Secret Manager (the `*_secret` fields hold names, never values)."""

    trackers: str = Field(
        "wandb",
        description="Comma-separated trackers every step reports to: wandb, tensorboard, mlflow, "
        "vertex ('' = none). A tracker that cannot be reached warns once; the step goes on.",
    )
    wandb_project: str = Field("dolly-lora", description="W&B project (key from env/.env only).")
    wandb_api_key_secret: SecretName = Field(
        "", description="Secret Manager name of the W&B API key, '' = env/.env."
    )
    mlflow_tracking_uri: str = Field(
        "",
        description="MLflow tracking server URI ('' = the MLFLOW_TRACKING_URI environment "
        "variable, else a local store next to the run; credentials from env/Secret Manager).",
    )
    mlflow_token_secret: SecretName = Field(
        "", description="Secret Manager name of the MLflow tracking token "
        "(MLFLOW_TRACKING_TOKEN), '' = env/.env."
    )
    vertex_experiment: str = Field(
        "",
        description="Vertex AI experiment the steps log to with trackers=vertex ('' = dolly-lora); "
        "submit --experiment sets it.",
    )

    @field_validator("trackers")
    @classmethod
    def _known_trackers(cls, v: str) -> str:
        names = [t.lower() for t in split_csv(v)]
        unknown = [t for t in names if t not in TRACKERS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], TRACKERS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(
                f"unknown tracker{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}{hint}; "
                f"choose from {', '.join(TRACKERS)} (comma-separated, '' for none), "
                "e.g. wandb,tensorboard"
            )
        return ",".join(dict.fromkeys(names))

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _no_credentials_in_uri(cls, v: str) -> str:
        v = v.strip()
        if re.match(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", v):
            raise ValueError(
                "the MLflow URI holds a password; give the URI without it and put the "
                "credentials in MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN "
                "(env/.env locally, --mlflow-token-secret on Vertex)"
            )
        return v

    @field_validator("vertex_experiment")
    @classmethod
    def _experiment_name(cls, v: str) -> str:
        if v and not re.match(VERTEX_EXPERIMENT, v):
            raise ValueError(
                f"Vertex experiment name {v!r}: lowercase letters, digits and '-', starting with "
                "a letter or digit, at most 128 characters"
            )
        return v

    @property
    def tracker_list(self) -> list[str]:
        return split_csv(self.trackers)


class FetchConfig(BaseModelField):
    """fetch-base-model: the only step that reads the Hugging Face token."""

    hf_token_secret: SecretName = Field(
        "", description="Secret Manager name of the HF token (gated Gemma), '' = env/.env."
    )


class CommonConfig(BaseModelField, SeqLenField, SeedField):
    """What data preparation and training share. In the pipeline `base_model` is filled with
    the fetched base model's folder (the `base` input), not the parameter."""


class DataConfig(CommonConfig, SystemPromptField, TrackingConfig):
    """prepare-data."""

    dataset: str = Field(
        "databricks/databricks-dolly-15k",
        description="Hugging Face dataset id, or a local or gs:// file (JSONL, .jsonl.gz, JSON "
        "array, Parquet, CSV), folder or glob of shards; embedded://dolly-15k-sample.jsonl",
    )
    data_format: Literal["auto", "dolly", "alpaca", "messages", "prompt_completion"] = Field(
        "auto", description="Row format ('auto' = detected from the fields; a mix is refused)."
    )
    columns: str = Field(
        "", description="Rename fields, name:column,... (e.g. instruction:question,response:answer)."
    )
    dataset_split: str = Field("train", description="Split of a Hugging Face dataset.")
    dataset_config: str = Field("", description="Configuration (subset) of a Hugging Face dataset.")
    dataset_revision: str = Field(
        "", description="Hub dataset revision ('' = the newest, pinned to its commit when read)."
    )
    categories: str = Field("", description="Comma-separated categories to keep ('' = all).")
    val_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="Share of rows for validation.")
    test_fraction: float = Field(0.05, gt=0.0, lt=1.0, description="Share of rows for test.")
    max_bad_row_fraction: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Malformed rows are skipped and counted up to this share; above it the step fails.",
    )
    drop_test_overlap: bool = Field(
        True, description="Drop test rows that copy a training row (same prompt or near copy)."
    )
    near_duplicate_threshold: float = Field(
        0.8, gt=0.0, le=1.0, description="MinHash Jaccard similarity at which rows count as near copies."
    )

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("empty; give a JSONL file, a gs:// URI, a Hugging Face "
                             "dataset id or embedded://dolly-15k-sample.jsonl")
        return v

    @field_validator("categories")
    @classmethod
    def _dolly_spelling(cls, v: str) -> str:
        """A Dolly name in any casing is that name; other names are kept for non-Dolly data."""
        return ",".join(
            normalize_category(c) if normalize_category(c) in DOLLY_CATEGORIES else c
            for c in split_csv(v)
        )

    @model_validator(mode="after")
    def _fractions(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} "
                "leaves nothing to train on; keep their sum below 1 (e.g. 0.05 each)"
            )
        return self

    @property
    def category_list(self) -> list[str]:
        return split_csv(self.categories)


class TrainConfig(CommonConfig, RunNameField, TrackingConfig):
    """fine-tune."""

    lora_r: int = Field(16, description="LoRA rank.")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA path.")
    target_modules: str = Field(
        "all-linear",
        description="'all-linear' or comma-separated module names (e.g. q_proj,v_proj).",
    )
    learning_rate: float = Field(2e-4, gt=0.0, le=1.0, description="Peak learning rate.")
    lr_scheduler_type: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Share of steps for warmup.")
    num_train_epochs: float = Field(1.0, gt=0.0, description="Epochs (ignored if max_steps > 0).")
    max_steps: int = Field(
        -1, ge=-1, description="Stop after this many optimizer steps (-1: num_train_epochs)."
    )
    per_device_train_batch_size: int = Field(8, ge=1, description="Sequences per forward pass.")
    gradient_accumulation_steps: int = Field(2, ge=1, description="Micro-batches per optimizer step.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping norm.")
    bf16: Literal["auto", "true", "false"] = Field(
        "auto", description="bf16 mixed precision; 'auto' = on where the GPU supports it."
    )
    quantization: Literal["none", "nf4"] = Field(
        "none",
        description="Base weights while training: 'none' (bf16 on GPU, fp32 on CPU) or 'nf4' "
        "(QLoRA: 4-bit NormalFloat with double quantization via bitsandbytes, bf16 compute). "
        "Evaluation and inference load the base the way the adapter was trained.",
    )
    num_processes: int = Field(
        0, ge=0, le=16,
        description="Training processes, data-parallel, one per GPU (0 = one per GPU the machine "
        "has, 1 on CPU). Global batch = per_device_train_batch_size x "
        "gradient_accumulation_steps x num_processes.",
    )
    distributed: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="With several processes: 'ddp' keeps a whole model on every GPU; 'fsdp' "
        "shards the frozen base across them (a model bigger than one GPU).",
    )
    batching: Literal["auto", "padded", "packed"] = Field(
        "auto",
        description="'padded': length-bucketed dynamic padding (CPU); 'packed': padding-free "
        "best-fit packing of whole rows into max_seq_len (GPU); 'auto' picks by hardware.",
    )
    logging_steps: int = Field(10, ge=1, description="Log loss/lr every N steps.")
    eval_steps: int = Field(100, ge=1, description="Validation loss every N steps.")
    checkpoint_uri: str = Field(
        "",
        description="gs:// root for resumable checkpoints ('' = none); they go to "
        "<root>/<run>/fine-tune/checkpoints/step-NNNNNN/ and a rerun of the same run resumes.",
    )
    save_steps: int = Field(100, ge=1, description="Checkpoint every N optimizer steps.")
    save_minutes: float = Field(
        15.0, ge=0.0, description="Also checkpoint when this many minutes passed (0 = off)."
    )
    save_total_limit: int = Field(3, ge=1, description="Complete checkpoints kept in GCS.")

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, v: int) -> int:
        if v == 0:
            raise ValueError(
                "max_steps=0 would train nothing; give a number of optimizer steps (e.g. 100), "
                "or -1 to train for num_train_epochs"
            )
        return v

    @field_validator("lora_r")
    @classmethod
    def _rank(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(f"LoRA rank must be a positive integer, got {v}; try 8, 16 or 32")
        return v

    @field_validator("target_modules")
    @classmethod
    def _modules(cls, v: str) -> str:
        if not split_csv(v):
            raise ValueError("target_modules is empty; use 'all-linear' or e.g. 'q_proj,v_proj'")
        return v

    @model_validator(mode="after")
    def _fsdp_not_with_nf4(self) -> TrainConfig:
        if self.distributed == "fsdp" and self.quantization == "nf4":
            raise ValueError(
                "distributed=fsdp with quantization=nf4 is not supported here; a 4-bit base fits "
                "one GPU, so use distributed=ddp (or quantization=none with fsdp)"
            )
        return self

    @field_validator("checkpoint_uri")
    @classmethod
    def _checkpoint_uri(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not (v.startswith("/") or v.startswith("gs://") and len(v) > len("gs://")):
            raise ValueError(f"checkpoint_uri must be a gs://BUCKET/PREFIX URI, an absolute local "
                             f"folder (local runs) or empty, got {v!r}")
        return v

    @property
    def target_module_list(self) -> list[str] | str:
        return "all-linear" if self.target_modules.strip() == "all-linear" else split_csv(
            self.target_modules
        )


class GenerationConfig(_Strict):
    max_new_tokens: int = Field(256, ge=1, le=8192, description="Tokens generated per answer.")
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 = greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (temperature > 0).")
    generation_batch_size: int = Field(16, ge=1, description="Prompts per generate() call.")


# Headline metrics the gate can use: whether higher is better, and the range a threshold on the
# improvement (tuned over base, in the metric's own units) may take. Loss is in nats per response
# token: an improvement of 10 nats/token is far beyond any real fine-tune, so it bounds the range.
HEADLINE_METRICS: dict[str, dict[str, Any]] = {
    "loss": {"higher_is_better": False, "threshold_range": (0.0, 10.0), "unit": "nats/token"},
    "rougeL": {"higher_is_better": True, "threshold_range": (0.0, 1.0), "unit": "ROUGE-L F1"},
}


# Below this many test rows the paired bootstrap's 95% interval is too narrow to trust: with no
# real effect the gate passes 25-40% of the time at 2 rows and 6-13% at 10, against 4-8% at 30
# (nominal 2.5%; benchmarks/gate_min_rows.py, docs/evaluation.md "How many test rows").
GATE_MIN_ROWS = 30


class EvalConfig(GenerationConfig, SeedField, TrackingConfig):
    """evaluate: how evaluation decides: the headline metric, the bootstrap and the gate's
    threshold."""

    eval_max_rows: int = Field(0, ge=0, description="Evaluate on at most N test rows (0 = all).")
    headline_metric: Literal["loss", "rougeL"] = Field(
        "loss",
        description="Metric the gate uses: 'loss' (response-token NLL, lower is better) or "
        "'rougeL' (higher is better).",
    )
    gate_threshold: float = Field(
        0.0,
        description="The tuned model passes the gate when the lower end of the 95% interval of "
        "its improvement over base on the headline metric exceeds this (metric units).",
    )
    bootstrap_samples: int = Field(
        2000, ge=100, le=100_000, description="Paired bootstrap resamples of the test rows."
    )
    gate_min_rows: int = Field(
        GATE_MIN_ROWS,
        ge=1,
        description="Fewest test rows the gate decides on: below it the verdict is 'not enough "
        "test rows to decide' and nothing is registered (per category: the interval is shown "
        "greyed out). Why 30: docs/evaluation.md.",
    )

    @model_validator(mode="after")
    def _threshold_in_range(self) -> EvalConfig:
        lo, hi = HEADLINE_METRICS[self.headline_metric]["threshold_range"]
        if not lo <= self.gate_threshold < hi:
            unit = HEADLINE_METRICS[self.headline_metric]["unit"]
            raise ValueError(
                f"gate_threshold={self.gate_threshold:g} is outside the range of a "
                f"{self.headline_metric} improvement ({unit}); use a value in [{lo:g}, {hi:g}), "
                "e.g. 0 to require any improvement the interval supports"
            )
        return self


class InferenceConfig(GenerationConfig, SystemPromptField, TrackingConfig):
    """inference."""

    prompts_uri: str = Field(
        "", description="JSONL of prompts ({'prompt': ...}) for inference ('' = test split)."
    )


class ReportConfig(RunNameField, TrackingConfig):
    """report."""

    cost_estimate: str = Field(
        "",
        description="The pre-run cost estimate `submit` computed (JSON; '' = none), shown in the "
        "report next to what the run really took.",
    )
    # planning.prices' g2-standard-8 on demand: a step imports nothing outside components/, so
    # the number is repeated here and tests/unit/test_profiles.py keeps the two equal.
    gpu_hourly_usd: float = Field(
        0.85362,
        ge=0.0,
        le=1000.0,
        description="Price of one hour of a GPU step's machine, for the cost estimate and the "
        "report (compiled from the price table for the profile's machine and capacity; set your "
        "own rate).",
    )


class ExportConfig(_Strict):
    """export: the merged model a serving container loads (docs/serving.md)."""

    export_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto",
        description="Weights of the merged model: bfloat16 (what vLLM serves on an L4), float32, "
        "or auto = the fine-tune's precision (bf16 on a GPU; fp32 on CPU, so a CPU-trained "
        "model answers exactly what was evaluated).",
    )


class RegisterConfig(_Strict):
    """register-model: how the registered model serves."""

    serving_image: str = Field(
        VLLM_SERVING_IMAGE,
        description="Serving container of the registered model: Model Garden's prebuilt vLLM "
        "image (a newer pytorch-vllm-serve tag works the same way).",
    )
    serving_max_model_len: int = Field(
        32768, ge=256, le=131072,
        description="vLLM --max-model-len: longest prompt+answer the endpoint accepts (Gemma 3 "
        "1B's context; its KV cache fits one L4 many times over).",
    )


class DeployConfig(_Strict):
    """deploy-model: the endpoint the registered version goes to (when `deploy` is on)."""

    deploy_endpoint: str = Field(
        "", description="Endpoint ID to deploy to (its previous version is replaced once the "
        "new one is healthy); '' reuses this project's endpoint, or creates one.",
    )
    deploy_min_replicas: int = Field(1, ge=1, le=100, description="Fewest serving machines.")
    deploy_max_replicas: int = Field(1, ge=1, le=100, description="Most serving machines.")
    deploy_ttl_hours: float = Field(
        8.0, ge=0, le=720, description="Hours until the deployed version is undeployed again "
        "(a one-run Vertex schedule created at deploy time); 0 = until `submit undeploy`.",
    )

    @model_validator(mode="after")
    def _replicas(self) -> DeployConfig:
        if self.deploy_max_replicas < self.deploy_min_replicas:
            raise ValueError(
                f"deploy_max_replicas={self.deploy_max_replicas} is below deploy_min_replicas="
                f"{self.deploy_min_replicas}; raise the maximum or lower the minimum"
            )
        return self


class DagConfig(_Strict):
    """Choices the DAG itself makes (which steps run), not settings of a step."""

    deploy: bool = Field(
        False,
        description="Deploy the registered version to an endpoint on one L4 after the gate "
        "passes. Off by default: an endpoint bills by the hour until undeployed.",
    )


class PipelineConfig(FetchConfig, DataConfig, TrainConfig, EvalConfig, InferenceConfig,
                     ReportConfig, ExportConfig, RegisterConfig, DeployConfig, DagConfig):
    """All pipeline parameters, flat, as the pipeline function takes them: the union of the
    steps' sections, so a field added to a section is a pipeline parameter too."""


SECTIONS_IN_STEP_ORDER: tuple[type[BaseModel], ...] = (
    FetchConfig, DataConfig, TrainConfig, EvalConfig, InferenceConfig, ReportConfig,
    ExportConfig, RegisterConfig, DeployConfig, DagConfig,
)


def parameter_defaults() -> dict[str, Any]:
    """Every pipeline parameter with its default, in the order of the steps that use it."""
    names = dict.fromkeys(n for s in SECTIONS_IN_STEP_ORDER for n in s.model_fields)
    names.update(dict.fromkeys(PipelineConfig.model_fields))  # any section not listed above
    return {name: PipelineConfig.model_fields[name].default for name in names}


def parameter_help() -> dict[str, str]:
    return {name: PipelineConfig.model_fields[name].description or ""
            for name in parameter_defaults()}


def build(model: type[BaseModel], values: dict[str, Any]) -> Any:
    """Validate `values` (unknown keys ignored) into `model`, raising one readable InputError."""
    fields = model.model_fields
    try:
        return model(**{k: v for k, v in values.items() if k in fields})
    except ValidationError as exc:
        raise validation_error(exc) from None
