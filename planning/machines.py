"""Each accelerator machine, described once: its type, GPUs, vCPUs and memory.

Training (the GPU steps' custom job, the profiles), serving (the endpoint's machine) and pricing
(`planning.prices`) all name a machine from this table, so a machine's shape is never written
twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AcceleratorMachine:
    """A Compute Engine machine type with the GPUs it comes with."""

    machine_type: str
    accelerator_type: str  # Vertex's name for the GPU
    accelerator_count: int
    cpu: str  # vCPUs, as a Kubernetes/KFP resource request
    memory: str

    def machine_spec(self) -> dict[str, Any]:
        """The machine as a custom job's or an endpoint's machine spec."""
        return {"machine_type": self.machine_type, "accelerator_type": self.accelerator_type,
                "accelerator_count": self.accelerator_count}


# G2: NVIDIA L4 (24 GB). Each type comes with a fixed number of L4s; Vertex rejects another
# count only after the job is queued, so the training job spec checks it against this table.
# cloud.google.com/compute/docs/accelerator-optimized-machines#g2-vms
G2_MACHINES: dict[str, AcceleratorMachine] = {m.machine_type: m for m in (
    AcceleratorMachine("g2-standard-4", "NVIDIA_L4", 1, "4", "16G"),
    AcceleratorMachine("g2-standard-8", "NVIDIA_L4", 1, "8", "32G"),
    AcceleratorMachine("g2-standard-12", "NVIDIA_L4", 1, "12", "48G"),
    AcceleratorMachine("g2-standard-16", "NVIDIA_L4", 1, "16", "64G"),
    AcceleratorMachine("g2-standard-32", "NVIDIA_L4", 1, "32", "128G"),
    AcceleratorMachine("g2-standard-24", "NVIDIA_L4", 2, "24", "96G"),
    AcceleratorMachine("g2-standard-48", "NVIDIA_L4", 4, "48", "192G"),
    AcceleratorMachine("g2-standard-96", "NVIDIA_L4", 8, "96", "384G"),
)}

# One L4 with 8 vCPU and 32 GB: the default job's GPU machine, for training and for serving.
G2_STANDARD_8 = G2_MACHINES["g2-standard-8"]
G2_STANDARD_48 = G2_MACHINES["g2-standard-48"]

# The steps that run on an accelerator machine (the others stay on a small CPU machine): what
# the memory check and the cost estimate count, and what pipelines.machines places on a GPU.
GPU_STEPS: tuple[str, ...] = ("fine-tune", "evaluate", "inference")

# Regions with G2 machines (NVIDIA L4): the regions of the g2-standard-* rows of SkyPilot's GCP
# catalog (github.com/skypilot-org/skypilot-catalog catalogs/v8/gcp/vms.csv, the stored version at
# commit 006059e0, read 2026-12-07). Compute Engine's list; Vertex AI custom training may offer
# fewer, and the quota check (`submit`) says what a project really has.
L4_REGIONS: frozenset[str] = frozenset(
    """
    asia-east1 asia-northeast1 asia-northeast3 asia-south1 asia-southeast1 europe-west1
    europe-west2 europe-west3 europe-west4 europe-west6 me-central2 northamerica-northeast1
    northamerica-northeast2 us-central1 us-east1 us-east4 us-west1 us-west4
    """.split()  # noqa: SIM905 - a word list reads better than quoted strings
)
