"""Register step: the merged model becomes a new version of one Vertex Model Registry model, with a
serving container that serves it.

Behind the gate, so only a model that beat its base reaches the registry. The version carries the
run's lineage as labels and in its description (pipeline job, base model, split hash, interval);
the `google.VertexModel` output links the console to it. Without a project (the local runner) the
same record goes to a local JSON file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.common.config import RegisterConfig
from components.common.results import (
    EXPORT_FILE,
    Export,
    GateVerdict,
    PreparedData,
    Registration,
)
from components.common.serving import container_spec, display_name_for, label_value

LABEL_SOURCE = "dolly-lora"
HASH_LABEL = "content-hash"
HASH_CHARS = 40  # of the SHA-256 hex digest: a label value holds 63 characters


def content_hash(model_dir: str) -> str:
    """SHA-256 over the merged model's files (names and bytes), export.json left out: its
    timings differ between two exports of the same weights. '' when there is no folder."""
    import hashlib

    root = Path(model_dir) if model_dir else None
    if root is None or not root.is_dir():
        return ""
    total = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != EXPORT_FILE):
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        total.update(f"{path.relative_to(root).as_posix()} {digest}\n".encode())
    return total.hexdigest()[:HASH_CHARS]


def lineage(
    model_metadata: dict[str, Any],
    model_dir: str,
    metrics_metadata: dict[str, Any],
    train_metadata: dict[str, Any],
    pipeline_job: str,
) -> dict[str, Any]:
    """Where the model came from, from the input artifacts' metadata and, where metadata does
    not arrive (a Vertex custom job's), from the files the steps wrote next to the model."""
    merged = Export.read(model_metadata)
    exported = Export.load(Path(model_dir) / EXPORT_FILE) if model_dir else Export()
    verdict = GateVerdict.read(metrics_metadata)
    return {
        "pipeline_job": pipeline_job,
        "base_model": merged.base_model or exported.base_model,
        "split_hash": PreparedData.read(train_metadata).split_hash,
        "eval_metric": verdict.headline_metric,
        "eval_improvement_low": verdict.improvement_low,
        "eval_improvement_high": verdict.improvement_high,
        "eval_rows": verdict.rows,
        "export_max_abs_diff": exported.export_max_abs_diff,
        "content_hash": content_hash(model_dir),
    }


def _num(value: Any) -> str:
    return f"{float(value):.4g}" if isinstance(value, int | float) else "none"


def registry_labels(info: dict[str, Any]) -> dict[str, str]:
    """Vertex labels (lowercase, [a-z0-9_-], 63 characters): 0.0123 -> '0-0123'."""
    labels = {
        "source": LABEL_SOURCE,
        "pipeline-job": info["pipeline_job"],
        "base-model": info["base_model"],
        "split-hash": info["split_hash"],
        "eval-metric": info["eval_metric"],
        "eval-low": _num(info["eval_improvement_low"]),
        "eval-high": _num(info["eval_improvement_high"]),
        HASH_LABEL: info.get("content_hash", ""),
    }
    return {k: label_value(v) for k, v in labels.items() if v}


def version_description(info: dict[str, Any]) -> str:
    return (
        f"Merged LoRA fine-tune of {info['base_model']} from pipeline job {info['pipeline_job']}; "
        f"data split {info['split_hash']}; {info['eval_metric']} improvement over base, 95% "
        f"interval [{_num(info['eval_improvement_low'])}, {_num(info['eval_improvement_high'])}] "
        f"on {info['eval_rows']} test rows."
    )


def upload_kwargs(
    *, model_uri: str, info: dict[str, Any], display_name: str, serving_image: str,
    max_model_len: int, serving_gpus: int = 1,
) -> dict[str, Any]:
    """Everything `aiplatform.Model.upload` gets, but the parent model. The container reads the
    weights from the copy Vertex makes of `artifact_uri` ($(AIP_STORAGE_URI))."""
    return {
        "display_name": display_name,
        "artifact_uri": model_uri,
        **container_spec(serving_image, "$(AIP_STORAGE_URI)", max_model_len, info["base_model"],
                          serving_gpus),
        "description": f"LoRA fine-tunes of {info['base_model']} on Dolly-format data, merged, "
                       "served by vLLM",
        "version_description": version_description(info),
        "labels": registry_labels(info),
        "is_default_version": True,
    }


def register_model(
    *,
    model_uri: str,
    info: dict[str, Any],
    project: str,
    location: str,
    display_name: str,
    serving_image: str,
    max_model_len: int,
    record_path: str,
    serving_gpus: int = 1,
) -> dict[str, Any]:
    """Upload (Vertex) or record (local) the merged model; returns the registry record.
    `display_name` '' names the registry model after the base model."""
    display_name = display_name or display_name_for(info.get("base_model"))
    kwargs = upload_kwargs(model_uri=model_uri, info=info, display_name=display_name,
                           serving_image=serving_image, max_model_len=max_model_len,
                           serving_gpus=serving_gpus)
    record: dict[str, Any] = {"registry": "local" if not project else "vertex", **info,
                              "display_name": display_name, "artifact_uri": model_uri,
                              "serving_image": serving_image, "labels": kwargs["labels"]}
    if project:
        from google.cloud import aiplatform

        aiplatform.init(project=project, location=location)
        existing = aiplatform.Model.list(
            filter=f'display_name="{display_name}"', order_by="create_time",
            project=project, location=location,
        )
        newest = existing[0] if existing else None  # its default version: the newest upload
        same = newest is not None and bool(info.get("content_hash")) and \
            (newest.labels or {}).get(HASH_LABEL) == info["content_hash"]
        model = newest if same else aiplatform.Model.upload(
            parent_model=newest.resource_name if newest else None,
            project=project, location=location, **kwargs,
        )
        record.update(resourceName=model.resource_name, version_id=model.version_id,
                      version_name=f"{model.resource_name}@{model.version_id}", unchanged=same)
        if same:
            print(f"register-model: the merged model is identical to {record['version_name']} "
                  f"(content hash {info['content_hash']}); no new version registered", flush=True)
    else:
        record["serving"] = {k: v for k, v in kwargs.items() if k.startswith("serving_")}
    Path(record_path).parent.mkdir(parents=True, exist_ok=True)
    Path(record_path).write_text(json.dumps(record, indent=2, default=str))
    return record


def run_register(
    cfg: RegisterConfig, *, model: str, metrics: str, train: str, registered_model: str,
    display_name: str, pipeline_job: str, project: str = "", location: str = "",
    serving_gpus: int = 1, model_metadata: dict[str, Any] | None = None,
    metrics_metadata: dict[str, Any] | None = None, train_metadata: dict[str, Any] | None = None,
) -> dict[str, Registration]:
    """The registry step: `model` is the merged model folder, `metrics` the gate's verdict and
    `train` the split it was trained on (for the lineage); `registered_model` gets the record.
    `project`/`location` are Vertex's run-time placeholders on Vertex and '' locally;
    `serving_gpus` is the serving machine's GPU count, fixed at compile time."""
    from components.common.paths import storage_uri

    info = lineage(model_metadata or {}, model, metrics_metadata or {}, train_metadata or {},
                   pipeline_job)
    record = register_model(
        model_uri=storage_uri(model), info=info, project=project, location=location,
        display_name=display_name, serving_image=cfg.serving_image,
        max_model_len=cfg.serving_max_model_len, record_path=registered_model,
        serving_gpus=serving_gpus,
    )
    registration = Registration.read(record)
    if registration.resourceName:
        registration.artifact_uri = (
            f"https://{location}-aiplatform.googleapis.com/v1/{registration.resourceName}")
    return {"registered_model": registration}
