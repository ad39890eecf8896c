"""Which machine each step runs on, and how each target asks for it.

GPU steps run on Vertex as custom jobs (`TrainingJobSpec`): only a custom job takes an exact
machine type, a boot disk, a timeout and Spot capacity. It gets gcpc's placeholders for the
pipeline job's service account and network; left empty, it would run as the Custom Code Service
Agent, which cannot read the project's secrets or write its bucket. CPU steps are plain tasks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from planning.machines import G2_MACHINES, G2_STANDARD_8, GPU_STEPS, AcceleratorMachine


@dataclass(frozen=True)
class MachineSpec:
    cpu: str
    memory: str
    accelerator_type: str | None = None
    accelerator_count: int = 0

    def apply(self, task: Any) -> Any:
        """Vertex's resource requests (the local runner ignores them)."""
        task.set_cpu_limit(self.cpu).set_memory_limit(self.memory)
        if self.accelerator_type:
            task.set_accelerator_type(self.accelerator_type)
            task.set_accelerator_limit(self.accelerator_count)
        return task

    def apply_kubernetes(self, task: Any, accelerator_type: str, count: int) -> Any:
        """Open-source KFP on GKE: the KFP driver uses the accelerator type verbatim as the
        Kubernetes resource name, so it is `nvidia.com/gpu`; the GPU model is a node selector,
        and the toleration lets the pod onto GKE's tainted GPU nodes."""
        from kfp import kubernetes

        task.set_cpu_limit(self.cpu).set_memory_limit(self.memory)
        task.set_accelerator_type(K8S_GPU_RESOURCE).set_accelerator_limit(count)
        kubernetes.add_node_selector(task, label_key="cloud.google.com/gke-accelerator",
                                     label_value=gke_accelerator(accelerator_type))
        kubernetes.add_toleration(task, key=K8S_GPU_RESOURCE, operator="Exists",
                                  effect="NoSchedule")
        return task


L4_GPU = MachineSpec(cpu=G2_STANDARD_8.cpu, memory=G2_STANDARD_8.memory,
                     accelerator_type=G2_STANDARD_8.accelerator_type,
                     accelerator_count=G2_STANDARD_8.accelerator_count)
SMALL_CPU = MachineSpec(cpu="4", memory="16G")

STEP_MACHINES: dict[str, MachineSpec] = {
    "fetch-base-model": SMALL_CPU,
    "data-key": MachineSpec(cpu="1", memory="2G"),  # reads one object's metadata
    "prepare-data": SMALL_CPU,
    "gate": SMALL_CPU,
    "select-trial": SMALL_CPU,  # reads the trials' scores, copies the winner's adapter
    "register-model": SMALL_CPU,
    "report": SMALL_CPU,
    # Merging in fp32 holds the base twice over for a moment (Gemma 3 1B: ~4 GB each).
    "export": MachineSpec(cpu="8", memory="32G"),
    "deploy-model": SMALL_CPU,  # waits on Vertex; the endpoint's machine is SERVING_MACHINE
    **{step: L4_GPU for step in GPU_STEPS},
}



# The machine a deployed model of the default profile runs on (a Vertex endpoint's dedicated
# resources): one L4 serves Gemma 3 1B in bf16 (2 GB of weights, the rest for the KV cache).
# Other models: `serving_machine` (planning.memory).
SERVING_MACHINE = G2_STANDARD_8


def training_machine(t: TrainingJobSpec) -> AcceleratorMachine:
    """The custom job's machine as a planning.machines row (a non-G2 type as given)."""
    return G2_MACHINES.get(t.machine_type) or AcceleratorMachine(
        t.machine_type, t.accelerator_type, t.accelerator_count, "", "")


def gpu_step_machines(t: TrainingJobSpec, params: dict[str, Any]) -> dict[str, AcceleratorMachine]:
    """Each GPU step's machine: fine-tune the training machine; evaluate and inference the
    smallest one that holds the model for generation (planning.memory.generation_machine)."""
    from planning.memory import generation_machine

    train = training_machine(t)
    gen = generation_machine(params, train)
    return {step: train if step == "fine-tune" else gen for step in GPU_STEPS}


def serving_machine(params: dict[str, Any]) -> AcceleratorMachine:
    """The endpoint's machine for these parameters' base model (planning.memory)."""
    from planning.memory import serving_machine as smallest

    return smallest(params, SERVING_MACHINE)


def export_machine(params: dict[str, Any]) -> MachineSpec:
    """The export step's CPU machine, sized for merging this base model in fp32."""
    from planning.memory import export_memory

    cpu, memory = export_memory(params)
    return MachineSpec(cpu=cpu, memory=memory)

# gcpc's run-time placeholders (google_cloud_pipeline_components._placeholders): Vertex fills
# them from the PipelineJob that runs the custom job.
SERVICE_ACCOUNT_PLACEHOLDER = "{{$.pipeline_service_account}}"
NETWORK_PLACEHOLDER = "{{$.pipeline_network}}"

# Open-source KFP on GKE: the Kubernetes resource and the node label of an accelerator type.
GKE_ACCELERATORS: dict[str, str] = {
    "NVIDIA_L4": "nvidia-l4",
    "NVIDIA_TESLA_T4": "nvidia-tesla-t4",
    "NVIDIA_TESLA_A100": "nvidia-tesla-a100",
    "NVIDIA_A100_80GB": "nvidia-a100-80gb",
    "NVIDIA_H100_80GB": "nvidia-h100-80gb",
}
K8S_GPU_RESOURCE = "nvidia.com/gpu"

_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
# A GPU job's deadline when there is no estimate to derive one from (a model the throughput
# table does not know): a quarter of Vertex's own 7-day default and of the old 24 h.
FALLBACK_TIMEOUT = "21600s"
TENSORBOARD_RESOURCE = re.compile(r"^projects/[^/\s]+/locations/[a-z0-9-]+/tensorboards/\d+$")
# The step whose custom job streams its event files to a Vertex TensorBoard.
TENSORBOARD_STEP = "fine-tune"


class Capacity(StrEnum):
    """How Vertex obtains the training VM (CustomJobSpec.Scheduling.strategy)."""

    STANDARD = "STANDARD"  # on-demand
    SPOT = "SPOT"  # ~60-70% cheaper, can be preempted
    FLEX_START = "FLEX_START"  # Dynamic Workload Scheduler: waits for capacity, cheaper


class TrainingJobSpec(BaseModel):
    """The Vertex custom job that runs each GPU step (fine-tune, evaluate, inference)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    machine_type: str = Field(G2_STANDARD_8.machine_type, description="Compute Engine machine type.")
    accelerator_type: str = Field(G2_STANDARD_8.accelerator_type, description="Vertex accelerator type.")
    accelerator_count: int = Field(G2_STANDARD_8.accelerator_count, ge=1, le=16,
                                   description="GPUs on the machine.")
    # What Vertex's DiskSpec accepts; pd-balanced is not among them (Vertex rejects the job).
    boot_disk_type: Literal["pd-ssd", "pd-standard", "hyperdisk-balanced"] = Field(
        "pd-ssd", description="Boot disk type: pd-ssd, pd-standard or hyperdisk-balanced."
    )
    boot_disk_size_gb: int = Field(200, ge=100, le=65536, description="Boot disk size (GB).")
    timeout: str = Field("", description="Longest each GPU job may run, e.g. '21600s' ('' = "
                         "each step's own deadline from the cost estimate, step_timeouts).")
    step_timeouts: dict[str, str] = Field(
        default_factory=dict, description="Each GPU step's deadline, e.g. {'fine-tune': "
        "'3600s'}; filled from the cost estimate by compile and submit (planning.cost.deadlines).")
    capacity: Capacity = Field(Capacity.STANDARD, description="STANDARD, SPOT or FLEX_START.")
    max_wait_duration: str = Field(
        "3600s", description="FLEX_START only: how long to wait for a machine ('0s' = forever)."
    )
    tensorboard: str = Field(
        "", description="Vertex TensorBoard the fine-tune job streams its curves to "
        "(projects/P/locations/L/tensorboards/ID; '' = none)."
    )
    base_output_directory: str = Field(
        "", description="gs:// folder of the fine-tune job's outputs; Vertex sets "
        "AIP_TENSORBOARD_LOG_DIR under it (needed with tensorboard)."
    )

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard(cls, v: str) -> str:
        if v and not TENSORBOARD_RESOURCE.match(v):
            raise ValueError(f"{v!r} is not a Vertex TensorBoard resource name like "
                             "projects/PROJECT/locations/REGION/tensorboards/1234567890")
        return v

    @field_validator("base_output_directory")
    @classmethod
    def _output_dir(cls, v: str) -> str:
        v = v.rstrip("/")
        if v and not re.match(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$", v):
            raise ValueError(f"base_output_directory must be a gs://BUCKET/PREFIX folder, got {v!r}")
        return v

    @field_validator("timeout", "max_wait_duration")
    @classmethod
    def _duration(cls, v: str) -> str:
        if v and not _DURATION.match(v):
            raise ValueError(f"{v!r} is not a duration in seconds like '21600s'")
        return v

    @field_validator("step_timeouts")
    @classmethod
    def _step_durations(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(GPU_STEPS))
        if unknown:
            raise ValueError(f"step_timeouts names {', '.join(unknown)}, not a GPU step "
                             f"({', '.join(GPU_STEPS)})")
        for step, d in v.items():
            if not _DURATION.match(d):
                raise ValueError(f"step_timeouts[{step}] {d!r} is not a duration like '3600s'")
        return dict(sorted(v.items()))

    def step_timeout(self, step: str) -> str:
        """The step's deadline: the override, else its own, else the fallback."""
        return self.timeout or self.step_timeouts.get(step) or FALLBACK_TIMEOUT

    def for_step(self, step: str, machine: AcceleratorMachine) -> TrainingJobSpec:
        """This job spec on `machine` (evaluate and inference get their own)."""
        return self.model_copy(update=dict(machine.machine_spec()))

    @model_validator(mode="after")
    def _tensorboard_needs_output(self) -> TrainingJobSpec:
        if self.tensorboard and not self.base_output_directory:
            raise ValueError(
                "a Vertex TensorBoard needs the job's base output directory, where the event "
                "files are written before upload: add --base-output-dir gs://BUCKET/tensorboard "
                "(or DOLLY_LORA_BASE_OUTPUT_DIR)"
            )
        return self

    @model_validator(mode="after")
    def _g2_needs_l4(self) -> TrainingJobSpec:
        # G2 types come with a fixed number of L4s; Vertex rejects another count only after the
        # job is queued, so it is checked against planning.machines here.
        known = G2_MACHINES.get(self.machine_type)
        if self.machine_type.startswith("g2-") and known is None:
            raise ValueError(f"unknown G2 machine type {self.machine_type!r}; "
                             f"choose from {', '.join(G2_MACHINES)}")
        if known is not None and (self.accelerator_type, self.accelerator_count) != (
                known.accelerator_type, known.accelerator_count):
            raise ValueError(
                f"{self.machine_type} comes with {known.accelerator_count} x "
                f"{known.accelerator_type}, not {self.accelerator_count} x {self.accelerator_type}"
            )
        return self

    def custom_job_kwargs(self, display_name: str) -> dict[str, Any]:
        """Arguments for gcpc's `create_custom_training_job_from_component`."""
        kwargs: dict[str, Any] = {
            "display_name": display_name,
            "machine_type": self.machine_type,
            "accelerator_type": self.accelerator_type,
            "accelerator_count": self.accelerator_count,
            "boot_disk_type": self.boot_disk_type,
            "boot_disk_size_gb": self.boot_disk_size_gb,
            "timeout": self.step_timeout(display_name),
            "strategy": self.capacity.value,
            # A preempted or crashed worker comes back as the same job, so the fine-tune step
            # resumes from its last complete GCS checkpoint (components/fine_tune/checkpointing).
            "restart_job_on_worker_restart": True,
            # Identity and network of the pipeline job (see the module docstring).
            "service_account": SERVICE_ACCOUNT_PLACEHOLDER,
            "network": NETWORK_PLACEHOLDER,
        }
        if self.capacity is Capacity.FLEX_START:
            kwargs["max_wait_duration"] = self.max_wait_duration
        if self.tensorboard and display_name == TENSORBOARD_STEP:
            # Vertex uploads what the job writes under AIP_TENSORBOARD_LOG_DIR
            # (<base_output_directory>/logs/) to this TensorBoard while it runs.
            kwargs["tensorboard"] = self.tensorboard
            kwargs["base_output_directory"] = self.base_output_directory
        return kwargs


def gke_accelerator(accelerator_type: str) -> str:
    """The GKE node label value of a Vertex accelerator type (NVIDIA_L4 -> nvidia-l4)."""
    return GKE_ACCELERATORS.get(accelerator_type, accelerator_type.lower().replace("_", "-"))
