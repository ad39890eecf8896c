"""Typed configuration: every pipeline parameter, its default, its help text and its checks.

Why here: defaults live in one place. The pipeline signature (`pipelines/lora_pipeline.py`) reads
its defaults from these models, the CLI validates `--param` overrides against them before anything
runs, and each step rebuilds the part it needs from its own arguments and checks it again, so bad
input stops before any GPU time is spent. The defaults are the real job: Gemma 3 1B instruct,
LoRA on Dolly-15k, one NVIDIA L4.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from components.common.errors import InputError

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


def split_csv(value: str) -> list[str]:
    """`"a, b,,c"` -> `["a", "b", "c"]`: list-valued parameters travel as comma-separated strings
    so they stay plain `str` pipeline parameters (easy to pass with `--param`)."""
    return [v.strip() for v in value.split(",") if v.strip()]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class CommonConfig(_Strict):
    base_model: str = Field(
        "google/gemma-3-1b-it",
        description="Hugging Face model id, local folder, gs:// folder or embedded://tiny-gemma3.",
    )
    max_seq_len: int = Field(
        1024, ge=16, le=32768, description="Longest prompt+response in tokens; longer rows drop."
    )
    seed: int = Field(42, ge=0, description="Seed for the split, LoRA init and data order.")


class DataConfig(CommonConfig):
    dataset: str = Field(
        "databricks/databricks-dolly-15k",
        description="Hugging Face dataset id, local JSONL, gs:// JSONL or embedded://dolly-15k-sample.jsonl",
    )
    categories: str = Field("", description="Comma-separated Dolly categories to keep ('' = all).")
    val_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="Share of rows for validation.")
    test_fraction: float = Field(0.05, gt=0.0, lt=1.0, description="Share of rows for test.")
    max_bad_row_fraction: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Malformed rows are skipped and counted up to this share; above it the step fails.",
    )
    system_prompt: str = Field("", description="Optional system message put before every prompt.")

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, v: str) -> str:
        unknown = [c for c in split_csv(v) if c not in DOLLY_CATEGORIES]
        if unknown:
            raise ValueError(
                f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                f"choose from {', '.join(DOLLY_CATEGORIES)}"
            )
        return v

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


class TrainConfig(CommonConfig):
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
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimizer steps (-1: epochs).")
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
        if v and (not v.startswith("gs://") or len(v) <= len("gs://")):
            raise ValueError(f"checkpoint_uri must be a gs://BUCKET/PREFIX URI or empty, got {v!r}")
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
    eval_max_rows: int = Field(0, ge=0, description="Evaluate on at most N test rows (0 = all).")


class SecretsConfig(_Strict):
    """Secret Manager resource names (never values) that Vertex steps read at runtime."""

    hf_token_secret: str = Field(
        "", description="Secret Manager name of the HF token (gated Gemma), '' = env/.env."
    )
    wandb_api_key_secret: str = Field(
        "", description="Secret Manager name of the W&B API key, '' = env/.env."
    )

    @field_validator("hf_token_secret", "wandb_api_key_secret")
    @classmethod
    def _resource_name(cls, v: str) -> str:
        from components.common.secrets import check_secret_name

        return check_secret_name(v)


# Headline metrics the gate can use: whether higher is better, and the range a threshold on the
# improvement (tuned over base, in the metric's own units) may take. Loss is in nats per response
# token: an improvement of 10 nats/token is far beyond any real fine-tune, so it bounds the range.
HEADLINE_METRICS: dict[str, dict[str, Any]] = {
    "loss": {"higher_is_better": False, "threshold_range": (0.0, 10.0), "unit": "nats/token"},
    "rougeL": {"higher_is_better": True, "threshold_range": (0.0, 1.0), "unit": "ROUGE-L F1"},
}


class EvalConfig(GenerationConfig):
    """How evaluation decides: the headline metric, the bootstrap and the gate's threshold."""

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


class ReportConfig(_Strict):
    cost_estimate: str = Field(
        "",
        description="The pre-run cost estimate `submit` computed (JSON; '' = none), shown in the "
        "report next to what the run really took.",
    )
    gpu_hourly_usd: float = Field(
        0.85362,
        ge=0.0,
        le=1000.0,
        description="Price of one hour of a GPU step's machine, for the cost estimate and the "
        "report (compiled from the price table for the profile's machine and capacity; "
        "g2-standard-8 + 1 L4 on demand is $0.85362/h in us-central1; set your own rate).",
    )


class PipelineConfig(DataConfig, TrainConfig, EvalConfig, ReportConfig, SecretsConfig):
    """All pipeline parameters, flat, as the pipeline function takes them."""

    prompts_uri: str = Field(
        "", description="JSONL of prompts ({'prompt': ...}) for inference ('' = test split)."
    )
    wandb_project: str = Field("dolly-lora", description="W&B project (key from env/.env only).")
    run_name: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Stable run name for checkpoints ('' = the pipeline job "
        "name). submit --local sets it to --run-id, so a rerun finds its checkpoints.",
    )


def parameter_defaults() -> dict[str, Any]:
    """Every pipeline parameter with its default, in declaration order."""
    return {name: f.default for name, f in PipelineConfig.model_fields.items()}


def parameter_help() -> dict[str, str]:
    return {name: f.description or "" for name, f in PipelineConfig.model_fields.items()}


def build(model: type[BaseModel], values: dict[str, Any]) -> Any:
    """Validate `values` (unknown keys ignored) into `model`, raising one readable InputError."""
    fields = model.model_fields
    try:
        return model(**{k: v for k, v in values.items() if k in fields})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "parameters"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
        raise InputError("; ".join(problems)) from None


# The embedded default: what `submit --local` runs with no cloud, GPU or network. A tiny Gemma 3
# and the shipped Dolly sample; the training knobs are sized so the whole DAG takes a few minutes
# on 2 CPU cores. It shows the machinery; quality comes from the real model on a GPU.
EMBEDDED_DEFAULT: dict[str, Any] = {
    "base_model": "embedded://tiny-gemma3",
    "dataset": "embedded://dolly-15k-sample.jsonl",
    "max_seq_len": 512,
    "val_fraction": 0.1,
    "test_fraction": 0.1,
    "learning_rate": 3e-3,
    "warmup_ratio": 0.05,
    "max_steps": 60,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "logging_steps": 5,
    "eval_steps": 20,
    # With --checkpoint-uri: a checkpoint every 5 of the 60 steps (~0.2 s each), so a run
    # killed at any point past step 5 resumes instead of starting over.
    "save_steps": 5,
    "max_new_tokens": 48,
}
