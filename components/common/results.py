"""What each step returns: one dataclass per output, written by the step, read back by everyone.

Why typed: a step's numbers travel as KFP artifact metadata (a JSON struct: integers come back as
floats, None is dropped) and as JSON files next to the artifacts (a Vertex custom job's metadata
never reaches the pipeline). `read` restores the declared types from either, in one place, so the
summary, the terminal, the report, the gate and register read attributes, not string keys.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

REST = "rest"  # field metadata: this dict field holds the keys no other field names


def _coerce(annotation: Any, value: Any) -> Any:
    """`value` as `annotation` says: a float that counts something back to int, a mapping back
    to its dataclass (or a dict of them); anything else as it is."""
    if value is None:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _coerce(kinds[0], value) if len(kinds) == 1 else value
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(annotation, type) and issubclass(annotation, Output):
        return annotation.read(value) if isinstance(value, Mapping) else value
    if origin is dict and isinstance(value, Mapping):
        item = typing.get_args(annotation)[1]
        if isinstance(item, type) and issubclass(item, Output):
            return {k: item.read(v) for k, v in value.items()}
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Output):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(kw_only=True)
class Output:
    """A step output: `to_dict` for files, `metadata` for KFP (no None), `read` back typed."""

    @classmethod
    def read(cls, data: Mapping[str, Any] | None) -> Self:
        """From metadata or a file's JSON: declared types restored, unknown keys ignored (or
        kept in the field marked REST), missing ones left at their defaults."""
        data = data or {}
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: _coerce(hints[k], v) for k, v in data.items() if k in fields}
        for name, f in fields.items():
            if f.metadata.get(REST):
                values[name] = {k: v for k, v in data.items() if k not in fields}
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """From the JSON file a step wrote; defaults when there is none."""
        p = Path(path)
        return cls.read(json.loads(p.read_text()) if p.is_file() else {})

    def to_dict(self) -> dict[str, Any]:
        """Every field (None kept), nested outputs as dicts, the REST field's keys inlined."""
        out: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = _plain(getattr(self, f.name))
            if f.metadata.get(REST):
                rest = value
            else:
                out[f.name] = value
        return {**rest, **out}

    def metadata(self) -> dict[str, Any]:
        """What goes on the KFP artifact: the fields that have a value."""
        return {k: v for k, v in self.to_dict().items() if v is not None}

    def write(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False))


@dataclass(kw_only=True)
class PeakMemory(Output):
    """The step's peak memory, MiB (`components.common.memory.peak_memory`)."""

    peak_rss_mb: float | None = None
    peak_cuda_allocated_mb: float | None = None

    def peak(self) -> dict[str, float]:
        return {k: v for k, v in (("peak_rss_mb", self.peak_rss_mb),
                                  ("peak_cuda_allocated_mb", self.peak_cuda_allocated_mb))
                if v is not None}


@dataclass(kw_only=True)
class Tracked(PeakMemory):
    """What every tracked step adds: its tracker link and report, and its own seconds."""

    wandb_url: str = ""
    tracking: dict[str, Any] = field(default_factory=dict)
    step_seconds: float | None = None


# ------------------------------------------------------------------------ fetch, prepare


@dataclass(kw_only=True)
class FetchedModel(PeakMemory):
    source: str = ""
    revision: str = ""
    files: int | None = None
    size_mb: float | None = None
    step_seconds: float | None = None


@dataclass(kw_only=True)
class PreparedData(Tracked):
    """One split's artifact (train, validation, test or rejected): the shared stats, its own
    row count and per-category counts."""

    rows: int | None = None
    categories: dict[str, int] = field(default_factory=dict)
    source_rows: int | None = None
    kept_rows: int | None = None
    rejected_rows: int | None = None
    filtered_rows: int | None = None
    train_rows: int | None = None
    validation_rows: int | None = None
    test_rows: int | None = None
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    split_hash: str = ""
    data_key: str = ""  # the source's content key (components/prepare_data/data_key.py)
    token_lengths: dict[str, Any] = field(default_factory=dict)
    selected_categories: list[str] = field(default_factory=list)
    categories_without_test_rows: list[str] = field(default_factory=list)
    renamed_categories: dict[str, int] = field(default_factory=dict)
    data_format: str = ""
    dataset_revision: str = ""  # the hub commit read ('' for a file)
    near_duplicate_rows: int | None = None
    test_overlap_rows: int | None = None
    test_overlap_dropped: int | None = None
    config: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------ fine-tune

METRICS_FILE = "metrics.json"  # TrainMetrics, in the adapter folder
SUMMARY = "summary"  # field metadata: the training figure summary.json keeps


def _s(default: Any = None) -> Any:
    return field(default=default, metadata={SUMMARY: True})


@dataclass(kw_only=True)
class TrainMetrics(Tracked):
    """`metrics.json` in the adapter folder (and, with the LoRA settings, the Model's
    metadata). Fields marked SUMMARY are the `training` block of summary.json."""

    train_loss: float | None = _s()
    first_logged_loss: float | None = None
    last_logged_loss: float | None = None
    # Validation loss of the adapter kept (the best one seen), and of the last step's.
    eval_loss: float | None = _s()
    eval_perplexity: float | None = None
    final_eval_loss: float | None = _s()
    kept_step: int | None = _s()
    epochs: float | None = _s()
    train_rows: int | None = None
    global_step: int | None = _s()
    train_seconds: float | None = _s()
    train_tokens: int | None = None
    tokens_per_second: float | None = _s()
    trainable_params: int | None = None
    total_params: int | None = None
    base_weights_digest_before: str | None = _s()
    base_weights_digest_after: str | None = _s()
    base_model: str = ""
    device: str = ""
    bf16: bool | None = None
    quantization: str = ""
    world_size: int | None = None
    distributed: str = ""
    global_batch_size: int | None = None
    loss_head: str = ""  # "fused" (TRL's tiled LM head) or "full_logits", by the memory plan
    activation_checkpointing: bool | None = None
    # Checkpointing (`checkpointing.Session.summary`); resumed_from_step None: started fresh.
    resumed_from_step: int | None = None
    checkpoint_prefix: str | None = _s()
    checkpoints_saved: int | None = _s()
    checkpoint_seconds: float | None = _s()
    checkpoint_seconds_each: float | None = _s()
    checkpoint_share: float | None = _s()
    checkpoint_mb: float | None = None

    def summary(self) -> dict[str, Any]:
        """summary.json's `training`: the fields marked SUMMARY, and the tracker link."""
        marked = [f.name for f in dataclasses.fields(self) if f.metadata.get(SUMMARY)]
        return {k: getattr(self, k) for k in [*marked, "wandb_url"]}


@dataclass(kw_only=True)
class AdapterModel(TrainMetrics):
    """fine-tune's Model artifact: its metrics and the LoRA settings."""

    lora_r: int | None = None
    lora_alpha: int | None = None
    target_modules: str = ""


@dataclass
class TrainResult:
    """What `train()` returns: its metrics (empty on ranks other than 0) and where it saved."""

    metrics: TrainMetrics
    output_dir: Path


# ------------------------------------------------------------------------ evaluate, gate


@dataclass(kw_only=True)
class Interval(Output):
    """The headline comparison, oriented one way: `improvement` > 0 means tuned is better
    (base − tuned for loss, tuned − base for ROUGE-L), with its bootstrap interval."""

    metric: str = ""
    higher_is_better: bool | None = None
    improvement: float | None = None
    improvement_low: float | None = None
    improvement_high: float | None = None
    threshold: float | None = None
    # Below min_rows the interval is too narrow to trust (docs/evaluation.md): no decision.
    min_rows: int | None = None
    enough_rows: bool = True
    tuned_better: bool = False
    confidence: float | None = None
    samples: int | None = None
    rows: int | None = None


def gate_sentence(enough_rows: bool, tuned_better: bool, rows: int | None,
                  min_rows: int | None) -> str:
    """The gate's decision and why, in the words the terminal, summary and report share."""
    if not enough_rows:
        return (f"too few test rows to decide ({rows} scored, `gate_min_rows` is {min_rows}): "
                "not registered")
    return ("tuned beats base beyond noise: register" if tuned_better
            else "tuned does not beat base beyond noise: not registered")


@dataclass(kw_only=True)
class Scores(Output):
    """One model's numbers on a set of test rows (exact match where a category scores it)."""

    loss: float | None = None
    perplexity: float | None = None
    rougeL: float | None = None  # noqa: N815 - the metric's own name, as in the files
    exact_match: float | None = None
    generation_tokens_per_second: float | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The numbers that are there: a metric a category does not score is absent."""
        return {k: v for k, v in super().to_dict().items() if v is not None}

    def values(self) -> dict[str, float]:
        return self.to_dict()


@dataclass(kw_only=True)
class CategoryResult(Output):
    rows: int | None = None
    base: Scores = field(default_factory=Scores)
    tuned: Scores = field(default_factory=Scores)
    headline: Interval = field(default_factory=Interval)


@dataclass(kw_only=True)
class Evaluation(Tracked):
    """evaluate's results file: base and tuned overall and per category, the headline interval
    and every row's generations (plain dicts: `id`, `category`, `<metric>_<model>`, ...)."""

    base: Scores = field(default_factory=Scores)
    tuned: Scores = field(default_factory=Scores)
    rows: list[dict[str, Any]] = field(default_factory=list)
    n_rows: int | None = None
    device: str = ""
    categories: dict[str, CategoryResult] = field(default_factory=dict)
    headline: Interval = field(default_factory=Interval)
    config: dict[str, Any] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """Flat numbers for the Metrics artifact and the trackers (overall and per category)."""
        out = {f"{m}_{k}": float(v) for m in ("base", "tuned")
               for k, v in getattr(self, m).values().items()}
        for cat, c in self.categories.items():
            for m in ("base", "tuned"):
                for k, v in getattr(c, m).values().items():
                    if k in ("loss", "rougeL", "exact_match"):
                        out[f"{cat}/{m}_{k}"] = float(v)
        h = self.headline
        out.update({f"headline_{k}": float(getattr(h, k))
                    for k in ("improvement", "improvement_low", "improvement_high")})
        out["tuned_better"] = float(h.tuned_better)
        out["enough_test_rows"] = float(h.enough_rows)
        out["test_rows"] = float(self.n_rows or 0)
        return out


@dataclass(kw_only=True)
class EvaluatedArtifact(Tracked):
    """evaluate's artifact metadata (the numbers are in its file, `Evaluation`)."""

    rows: int | None = None
    tuned_better: bool = False


@dataclass(kw_only=True)
class GateVerdict(PeakMemory):
    """The gate's Metrics artifact: the decision, and every scalar of `Evaluation.scalars`."""

    headline_metric: str = ""
    tuned_better: bool = False
    enough_rows: bool = True
    min_rows: int | None = None
    improvement_low: float | None = None
    improvement_high: float | None = None
    rows: int | None = None
    wandb_url: str = ""
    tracking: dict[str, Any] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict, metadata={REST: True})

    @classmethod
    def of(cls, results: Evaluation) -> GateVerdict:
        h = results.headline
        return cls(headline_metric=h.metric, tuned_better=h.tuned_better,
                   enough_rows=h.enough_rows, min_rows=h.min_rows or 0,
                   improvement_low=h.improvement_low, improvement_high=h.improvement_high,
                   rows=results.n_rows, wandb_url=results.wandb_url, tracking=results.tracking,
                   scalars=results.scalars())


# ------------------------------------------------------------------------ inference


@dataclass(kw_only=True)
class Predictions(Tracked):
    """inference's `summary.json` and artifact metadata: throughput of generation alone (model
    loading apart) and per-row latency percentiles."""

    rows: int | None = None
    completion_tokens: int | None = None
    seconds: float | None = None
    load_seconds: float | None = None
    tokens_per_second: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    first_token_p50_s: float | None = None
    device: str = ""
    generation_batch_size: int | None = None


# ------------------------------------------------------------------------ export, register


EXPORT_FILE = "export.json"  # Export, next to the merged weights


@dataclass(kw_only=True)
class Export(PeakMemory):
    """The merged model's `export.json` and metadata: both logit checks and their bounds."""

    base_model: str = ""
    dtype: str = ""
    verify_prompts: int | None = None
    verify_tokens: int | None = None
    logit_scale: float | None = None
    adapter_effect_max_abs: float | None = None
    merge_max_abs_diff: float | None = None
    merge_tolerance: float | None = None
    export_max_abs_diff: float | None = None
    base_drift_max_abs: float | None = None
    export_bound: float | None = None
    merge_seconds: float | None = None
    seconds: float | None = None
    size_bytes: int | None = None


@dataclass(kw_only=True)
class ExportedAdapter(PeakMemory):
    base_model: str = ""


@dataclass(kw_only=True)
class Registration(PeakMemory):
    """register-model's artifact metadata: the registry entry and the model's lineage."""

    registry: str = ""
    display_name: str = ""
    artifact_uri: str = ""
    serving_image: str = ""
    # Set by a Vertex upload only; resourceName is what the google.VertexModel artifact reads.
    resourceName: str | None = None  # noqa: N815
    version_id: str | None = None
    version_name: str | None = None
    pipeline_job: str = ""
    base_model: str = ""
    split_hash: str = ""
    eval_metric: str = ""
    eval_improvement_low: float | None = None
    eval_improvement_high: float | None = None
    eval_rows: int | None = None
    export_max_abs_diff: float | None = None
    content_hash: str = ""  # of the merged model's files (register.content_hash)
    unchanged: bool = False  # identical to the newest version: nothing was uploaded


# The overall metrics the verdict checks against the headline: label, and whether higher is
# better. Perplexity is left out: it moves with loss, always the same way.
_OTHER_WAY = {"loss": ("loss", False), "rougeL": ("ROUGE-L", True),
              "exact_match": ("exact match", True)}


def other_way(headline: Interval | None, base: Scores | None, tuned: Scores | None) -> list[str]:
    """Each overall metric that moved against the headline's estimate, with its numbers
    ("ROUGE-L fell 0.065 -> 0.040"); a change under the report's 3 decimals does not count."""
    if headline is None or base is None or tuned is None or not headline.improvement:
        return []
    helped = headline.improvement > 0
    moved = []
    for key, (label, higher) in _OTHER_WAY.items():
        b, t = getattr(base, key), getattr(tuned, key)
        if key == headline.metric or b is None or t is None or round(b, 3) == round(t, 3):
            continue
        better = (t > b) == higher
        if better != helped:
            moved.append(f"{label} {'rose' if t > b else 'fell'} {b:.3f} -> {t:.3f}")
    return moved
