"""The one place that says which machine each step runs on.

Vertex AI picks the machine from these requests: one NVIDIA L4 with 8 vCPU and 32 GB is a
`g2-standard-8`. The local runner ignores them (with a warning); they are in the compiled YAML.

The fine-tune step on Vertex runs as a Vertex custom job (`TrainingJobSpec`), because only a
custom job takes an exact machine type, a boot disk, a timeout and Spot / FLEX_START capacity.
Every knob of that job lives in `TrainingJobSpec`; `compile.py` flags only override its fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


@dataclass(frozen=True)
class MachineSpec:
    cpu: str
    memory: str
    accelerator_type: str | None = None
    accelerator_count: int = 0

    def apply(self, task: Any) -> Any:
        task.set_cpu_limit(self.cpu).set_memory_limit(self.memory)
        if self.accelerator_type:
            task.set_accelerator_type(self.accelerator_type)
            task.set_accelerator_limit(self.accelerator_count)
        return task


# g2-standard-8: 1 x NVIDIA L4 (24 GB), 8 vCPU, 32 GB RAM.
L4_GPU = MachineSpec(cpu="8", memory="32G", accelerator_type="NVIDIA_L4", accelerator_count=1)
SMALL_CPU = MachineSpec(cpu="4", memory="16G")

STEP_MACHINES: dict[str, MachineSpec] = {
    "prepare-data": SMALL_CPU,
    "fine-tune": L4_GPU,
    "evaluate": L4_GPU,
    "inference": L4_GPU,
    "register-model": SMALL_CPU,
    "report": SMALL_CPU,
}

# G2 machine types come with a fixed number of L4s; asking for another count is rejected by
# Vertex only after the job is queued, so check it here.
G2_L4_COUNT: dict[str, int] = {
    "g2-standard-4": 1,
    "g2-standard-8": 1,
    "g2-standard-12": 1,
    "g2-standard-16": 1,
    "g2-standard-32": 1,
    "g2-standard-24": 2,
    "g2-standard-48": 4,
    "g2-standard-96": 8,
}
_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")


class Capacity(StrEnum):
    """How Vertex obtains the training VM (CustomJobSpec.Scheduling.strategy)."""

    STANDARD = "STANDARD"  # on-demand
    SPOT = "SPOT"  # ~60-70% cheaper, can be preempted
    FLEX_START = "FLEX_START"  # Dynamic Workload Scheduler: waits for capacity, cheaper


class TrainingJobSpec(BaseModel):
    """The Vertex custom job that runs the fine-tune step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    machine_type: str = Field("g2-standard-8", description="Compute Engine machine type.")
    accelerator_type: str = Field("NVIDIA_L4", description="Vertex accelerator type.")
    accelerator_count: int = Field(1, ge=1, le=16, description="GPUs on the machine.")
    boot_disk_type: Literal["pd-ssd", "pd-standard", "pd-balanced", "hyperdisk-balanced"] = (
        "pd-ssd"
    )
    boot_disk_size_gb: int = Field(200, ge=100, le=65536, description="Boot disk size (GB).")
    timeout: str = Field("86400s", description="Longest the job may run, e.g. '21600s'.")
    capacity: Capacity = Field(Capacity.STANDARD, description="STANDARD, SPOT or FLEX_START.")
    max_wait_duration: str = Field(
        "3600s", description="FLEX_START only: how long to wait for a machine ('0s' = forever)."
    )

    @field_validator("timeout", "max_wait_duration")
    @classmethod
    def _duration(cls, v: str) -> str:
        if not _DURATION.match(v):
            raise ValueError(f"{v!r} is not a duration in seconds like '86400s'")
        return v

    @model_validator(mode="after")
    def _g2_needs_l4(self) -> TrainingJobSpec:
        expected = G2_L4_COUNT.get(self.machine_type)
        if self.machine_type.startswith("g2-") and expected is None:
            raise ValueError(f"unknown G2 machine type {self.machine_type!r}; "
                             f"choose from {', '.join(G2_L4_COUNT)}")
        if expected is not None and (
            self.accelerator_type != "NVIDIA_L4" or self.accelerator_count != expected
        ):
            raise ValueError(
                f"{self.machine_type} comes with {expected} x NVIDIA_L4, not "
                f"{self.accelerator_count} x {self.accelerator_type}"
            )
        return self

    def custom_job_kwargs(self) -> dict[str, Any]:
        """Arguments for gcpc's `create_custom_training_job_from_component`."""
        kwargs: dict[str, Any] = {
            "machine_type": self.machine_type,
            "accelerator_type": self.accelerator_type,
            "accelerator_count": self.accelerator_count,
            "boot_disk_type": self.boot_disk_type,
            "boot_disk_size_gb": self.boot_disk_size_gb,
            "timeout": self.timeout,
            "strategy": self.capacity.value,
            # A preempted or crashed worker comes back as the same job, so the fine-tune step
            # resumes from its last complete GCS checkpoint (components/fine_tune/checkpointing).
            "restart_job_on_worker_restart": True,
        }
        if self.capacity is Capacity.FLEX_START:
            kwargs["max_wait_duration"] = self.max_wait_duration
        return kwargs
