"""The one place that says which machine each step runs on.

Vertex AI picks the machine from these requests: one NVIDIA L4 with 8 vCPU and 32 GB is a
`g2-standard-8`. The local runner ignores them (with a warning); they are in the compiled YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    "report": SMALL_CPU,
}
