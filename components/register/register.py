"""Register step: the tuned adapter becomes a new version of one Vertex Model Registry model.

Why a step of its own, behind the evaluation gate: only a model that beat the base model should
reach the registry, and the registry entry is linked to the run (its labels carry the pipeline
job name; the step's input and output artifacts give the console's dataset -> training -> model
-> registry lineage). Without a project (the local runner) it writes the same record to a local
JSON file instead, so the gate is exercised by `submit --local` too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from components.common.config import NoParameters


def _label(value: str) -> str:
    """Vertex label values: lowercase letters, digits, '-', '_', at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def display_name_for(base_model: str | None) -> str:
    """`google/gemma-3-1b-it` -> `dolly-lora-gemma-3-1b-it`: one registry model per base model,
    so adapters of different bases never become versions of one entry."""
    name = (base_model or "model").rstrip("/").rsplit("/", 1)[-1].removeprefix("embedded:")
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "model"
    return f"dolly-lora-{slug}"[:128]


def register_model(
    *,
    model_uri: str,
    model_metadata: dict[str, Any],
    project: str,
    location: str,
    display_name: str,
    serving_image: str,
    pipeline_job: str,
    record_path: str,
    model_dir: str = "",
) -> dict[str, Any]:
    """Upload (Vertex) or record (local) the model; returns the registry metadata.

    The base model id comes from the adapter's `training_config.json` when the artifact's
    metadata lacks it (on Vertex, fine-tune is a custom job whose metadata does not arrive)."""
    config = Path(model_dir) / "training_config.json" if model_dir else None
    base_model = model_metadata.get("base_model") or (
        json.loads(config.read_text()).get("base_model") if config and config.is_file() else None
    )
    display_name = display_name or display_name_for(base_model)
    base = {
        "display_name": display_name,
        "artifact_uri": model_uri,
        "pipeline_job": pipeline_job,
        "base_model": base_model,
    }
    if not project:
        record = {"registry": "local", **base}
        Path(record_path).parent.mkdir(parents=True, exist_ok=True)
        Path(record_path).write_text(json.dumps(record, indent=2, default=str))
        return record

    from google.cloud import aiplatform

    aiplatform.init(project=project, location=location)
    existing = aiplatform.Model.list(
        filter=f'display_name="{display_name}"', order_by="create_time"
    )
    parent = existing[0].resource_name if existing else None
    model = aiplatform.Model.upload(
        display_name=display_name,
        artifact_uri=model_uri,
        serving_container_image_uri=serving_image,
        parent_model=parent,
        is_default_version=True,
        description=f"LoRA adapter on {base['base_model']} from pipeline job {pipeline_job}",
        labels={"pipeline-job": _label(pipeline_job), "source": "dolly-lora"},
    )
    record = {
        "registry": "vertex",
        **base,
        "resourceName": model.resource_name,
        "version_id": model.version_id,
    }
    Path(record_path).parent.mkdir(parents=True, exist_ok=True)
    Path(record_path).write_text(json.dumps(record, indent=2, default=str))
    return record


def run_register(
    cfg: NoParameters, *, model: str, registered_model: str, display_name: str,
    serving_image: str, pipeline_job: str, project: str = "", location: str = "",
) -> dict[str, dict[str, Any]]:
    """The registry step: `model` is the adapter folder, `registered_model` the record file.
    `project`/`location` are Vertex's run-time placeholders on Vertex and '' locally."""
    from components.common.paths import storage_uri

    record = register_model(
        model_uri=storage_uri(model), model_metadata={}, project=project, location=location,
        display_name=display_name, serving_image=serving_image, pipeline_job=pipeline_job,
        record_path=registered_model, model_dir=model,
    )
    meta = dict(record)
    if record.get("resourceName"):
        meta["artifact_uri"] = (
            f"https://{location}-aiplatform.googleapis.com/v1/{record['resourceName']}")
    return {"registered_model": meta}
