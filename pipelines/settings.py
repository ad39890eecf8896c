"""Compile-time settings: which image, which kind of training task, which machine.

Why compile time: a KFP pipeline's graph is fixed when it is compiled. The image URI is baked
into every executor, and the fine-tune task is either a plain container task (runs under
`kfp.local`) or a Vertex custom job (exact machine type, Spot/FLEX_START, timeout; cannot run
under `kfp.local`). `build_pipeline(CompileSettings)` is the one place that choice is made.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from components.common.errors import InputError
from components.images import DEFAULT_IMAGE
from pipelines.resources import TrainingJobSpec

# registry-host[:port]/path[:tag][@sha256:digest], lowercase as Docker requires.
IMAGE_REF = re.compile(
    r"^(?P<repo>[a-z0-9]+([.-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(@(?P<digest>sha256:[0-9a-f]{64}))?$"
)

ENV_IMAGE = "DOLLY_LORA_IMAGE"
ENV_TRAINING = {  # env var -> TrainingJobSpec field
    "DOLLY_LORA_MACHINE_TYPE": "machine_type",
    "DOLLY_LORA_ACCELERATOR_TYPE": "accelerator_type",
    "DOLLY_LORA_ACCELERATOR_COUNT": "accelerator_count",
    "DOLLY_LORA_BOOT_DISK_GB": "boot_disk_size_gb",
    "DOLLY_LORA_TRAIN_TIMEOUT": "timeout",
    "DOLLY_LORA_CAPACITY": "capacity",
}


class CompileSettings(BaseModel):
    """Everything that shapes the compiled YAML besides the pipeline parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Literal["vertex", "local"] = Field(
        "vertex", description="vertex: fine-tune as a Vertex custom job; local: plain task."
    )
    image: str = Field(DEFAULT_IMAGE, description="Image for every component; tag or digest.")
    training: TrainingJobSpec = Field(default_factory=TrainingJobSpec)
    model_display_name: str = Field(
        "dolly-lora-gemma3-1b", description="Vertex Model Registry model that gets new versions."
    )

    @field_validator("image")
    @classmethod
    def _image_ref(cls, v: str) -> str:
        if not IMAGE_REF.match(v):
            raise ValueError(
                f"{v!r} is not an image reference like "
                "REGION-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG or ...IMAGE@sha256:<64 hex>"
            )
        return v

    @property
    def image_digest(self) -> str | None:
        m = IMAGE_REF.match(self.image)
        return m.group("digest") if m else None

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> CompileSettings:
        """Defaults < environment (DOLLY_LORA_*) < explicit overrides (flags); one InputError."""
        env = os.environ if env is None else env
        training: dict[str, Any] = {f: env[k] for k, f in ENV_TRAINING.items() if env.get(k)}
        top: dict[str, Any] = {}
        if env.get(ENV_IMAGE):
            top["image"] = env[ENV_IMAGE]
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key in TrainingJobSpec.model_fields:
                training[key] = value
            else:
                top[key] = value
        try:
            return cls(**top, training=TrainingJobSpec(**training))
        except ValidationError as exc:
            raise InputError(
                "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'settings'}: "
                    f"{e['msg'].removeprefix('Value error, ')}"
                    for e in exc.errors()
                )
            ) from None


def with_image(component: Any, image: str) -> Any:
    """A copy of a container/Python component that runs in `image` (the original is untouched)."""
    clone = copy.deepcopy(component)
    clone.component_spec.implementation.container.image = image
    return clone
