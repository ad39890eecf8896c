"""The one place that says which machine each step runs on.

The GPU steps (fine-tune, evaluate, inference) run on Vertex as Vertex custom jobs described by
`TrainingJobSpec`, because only a custom job takes an exact machine type, a boot disk, a timeout
and Spot / FLEX_START capacity (Vertex offers Spot for custom jobs, not for plain pipeline
tasks); `compile.py` flags only override its fields. The CPU steps are plain tasks whose
requests (`STEP_MACHINES`) Vertex turns into a machine; the local runner ignores them.

A custom job runs as the service account and in the network of the pipeline job that starts it:
the job gets gcpc's run-time placeholders for both, which Vertex resolves from the PipelineJob
(`submit --service-account/--network`). Left empty, the job would run as the Vertex AI Custom
Code Service Agent, which cannot read the project's secrets or write its bucket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.memory import Fit


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


# g2-standard-8: 1 x NVIDIA L4 (24 GB), 8 vCPU, 32 GB RAM.
L4_GPU = MachineSpec(cpu="8", memory="32G", accelerator_type="NVIDIA_L4", accelerator_count=1)
SMALL_CPU = MachineSpec(cpu="4", memory="16G")

STEP_MACHINES: dict[str, MachineSpec] = {
    "fetch-base-model": SMALL_CPU,
    "prepare-data": SMALL_CPU,
    "fine-tune": L4_GPU,
    "evaluate": L4_GPU,
    "gate": SMALL_CPU,
    "inference": L4_GPU,
    "register-model": SMALL_CPU,
    "report": SMALL_CPU,
    # Merging in fp32 holds the base twice over for a moment (Gemma 3 1B: ~4 GB each).
    "export": MachineSpec(cpu="8", memory="32G"),
    "deploy-model": SMALL_CPU,  # waits on Vertex; the endpoint's machine is SERVING_MACHINE
}
GPU_STEPS: tuple[str, ...] = tuple(s for s, m in STEP_MACHINES.items() if m.accelerator_type)



@dataclass(frozen=True)
class ServingMachine:
    """The machine a deployed model runs on (a Vertex endpoint's dedicated resources)."""

    machine_type: str
    accelerator_type: str
    accelerator_count: int
    # On-demand list price of the machine with its GPU in us-central1 (docs/serving.md): what
    # an endpoint costs per replica for every hour it is deployed, answering or not.
    hourly_usd: float

    def deploy_args(self) -> dict[str, Any]:
        return {"machine_type": self.machine_type, "accelerator_type": self.accelerator_type,
                "accelerator_count": self.accelerator_count}


# One L4 serves Gemma 3 1B in bf16 (2 GB of weights, the rest of its 24 GB for the KV cache).
SERVING_MACHINE = ServingMachine("g2-standard-8", "NVIDIA_L4", 1, hourly_usd=0.85)

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

    machine_type: str = Field("g2-standard-8", description="Compute Engine machine type.")
    accelerator_type: str = Field("NVIDIA_L4", description="Vertex accelerator type.")
    accelerator_count: int = Field(1, ge=1, le=16, description="GPUs on the machine.")
    # What Vertex's DiskSpec accepts; pd-balanced is not among them (Vertex rejects the job).
    boot_disk_type: Literal["pd-ssd", "pd-standard", "hyperdisk-balanced"] = Field(
        "pd-ssd", description="Boot disk type: pd-ssd, pd-standard or hyperdisk-balanced."
    )
    boot_disk_size_gb: int = Field(200, ge=100, le=65536, description="Boot disk size (GB).")
    timeout: str = Field("86400s", description="Longest the job may run, e.g. '21600s'.")
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
        if not _DURATION.match(v):
            raise ValueError(f"{v!r} is not a duration in seconds like '86400s'")
        return v

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

    def custom_job_kwargs(self, display_name: str) -> dict[str, Any]:
        """Arguments for gcpc's `create_custom_training_job_from_component`."""
        kwargs: dict[str, Any] = {
            "display_name": display_name,
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


# ---- Profiles: model, machine, GPUs, precision, batch and sequence, chosen together -----------
#
# `compile.py --profile NAME` / `submit --profile NAME` pick one row; its `params` become the
# compiled pipeline's parameter defaults and its machine the GPU steps' custom job. Every value
# still overrides: profile < DOLLY_LORA_* environment < flags and --param. Global batch =
# per_device_train_batch_size x gradient_accumulation_steps x processes = 16 sequences in every
# profile, so the learning rate means the same everywhere.
#
# Beside each row: the memory of one GPU by the arithmetic of pipelines/memory.py (GiB; LoRA in
# millions of parameters), from the architectures in pipelines/gemma3.py. The L4 budget is 90% of
# its 22.5 usable GiB = 20.25 GiB. tests/unit/test_profiles.py recomputes every number.


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    machine_type: str
    accelerator_count: int
    params: dict[str, Any]
    fit: Fit
    accelerator_type: str = "NVIDIA_L4"

    @property
    def processes(self) -> int:
        return self.params.get("num_processes") or self.accelerator_count

    @property
    def global_batch(self) -> int:
        p = self.params
        return p["per_device_train_batch_size"] * p["gradient_accumulation_steps"] * self.processes

    @property
    def settings(self) -> dict[str, Any]:
        """The compile settings it chooses: the GPU steps' machine. Not the registry model,
        which register-model names after the run's base model (a `--param base_model` must
        never make its adapter a version of the profile's model)."""
        return {"machine_type": self.machine_type, "accelerator_type": self.accelerator_type,
                "accelerator_count": self.accelerator_count}


_SEQ = {"max_seq_len": 1024, "lora_r": 16, "num_processes": 0}
PROFILES: dict[str, Profile] = {p.name: p for p in (
    # Gemma 3 1B, 999.9M params, bf16 LoRA, 1 x L4. weights 999.9M x 2 B = 1.86; LoRA 13.05M
    # x 16 B (fp32 weight, grad, Adam m and v) = 0.19; activations 8 x 1024 tokens = 1.30;
    # + loss 1.0 + overhead 1.5 = 5.86 of 20.25 GiB. The default job.
    Profile("default", "Gemma 3 1B, LoRA bf16, 1 x L4", "g2-standard-8", 1,
            {"base_model": "google/gemma-3-1b-it", "quantization": "none", "distributed": "ddp",
             "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, **_SEQ},
            Fit(1.86, 13.05, 0.19, 1.30, 5.86)),
    # Gemma 3 4B (4.30B params with its vision tower), QLoRA, 1 x L4. weights: 3.62B Linear
    # weights x 0.5159 B (NF4 + double-quantized scales) + 0.68B others in fp32 x 4 B = 4.27;
    # LoRA 29.80M x 8 B (bf16) = 0.22; activations 4 x 1024 (fp32 residual) = 2.03; + 2.5
    # = 9.03 of 20.25 GiB (in bf16 the weights alone would be 8.01: it would fit too, see
    # 4b-lora-4xl4; QLoRA leaves room for longer sequences on one GPU).
    Profile("4b-qlora", "Gemma 3 4B, QLoRA (NF4), 1 x L4", "g2-standard-8", 1,
            {"base_model": "google/gemma-3-4b-it", "quantization": "nf4", "distributed": "ddp",
             "per_device_train_batch_size": 4, "gradient_accumulation_steps": 4, **_SEQ},
            Fit(4.27, 29.80, 0.22, 2.03, 9.03)),
    # Gemma 3 12B (12.19B params), QLoRA, 1 x L4: the arithmetic needs no second GPU. weights:
    # 11.17B Linear x 0.5159 B + 1.02B others x 4 B (the 262k x 3840 embedding, fp32) = 9.16;
    # LoRA 65.47M x 8 B = 0.49; activations 2 x 1024 = 1.95; + 2.5 = 14.10 of 20.25 GiB
    # (in bf16: 22.70 GiB of weights, more than an L4 has; see 12b-lora-fsdp-4xl4).
    Profile("12b-qlora", "Gemma 3 12B, QLoRA (NF4), 1 x L4", "g2-standard-8", 1,
            {"base_model": "google/gemma-3-12b-it", "quantization": "nf4", "distributed": "ddp",
             "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8, **_SEQ},
            Fit(9.16, 65.47, 0.49, 1.95, 14.10)),
    # Gemma 3 4B, bf16 LoRA, data-parallel over the 4 L4s of a g2-standard-48 (DDP: a whole
    # copy per GPU). weights 4.30B x 2 B = 8.01; LoRA 29.80M x 16 B = 0.44; activations
    # 4 x 1024 = 1.37; + 2.5 = 12.32 of 20.25 GiB per GPU. 4 x 4 x 1 = 16 per step.
    Profile("4b-lora-4xl4", "Gemma 3 4B, LoRA bf16, DDP on 4 x L4", "g2-standard-48", 4,
            {"base_model": "google/gemma-3-4b-it", "quantization": "none", "distributed": "ddp",
             "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, **_SEQ},
            Fit(8.01, 29.80, 0.44, 1.37, 12.32)),
    # Gemma 3 12B, bf16 LoRA, FSDP over 4 x L4: 22.70 GiB of bf16 weights fit no single L4, so
    # they are sharded: 22.70 / 4 + 2 gathered layers (2 x 0.42) = 6.51; LoRA 65.47M x 16 B / 4
    # = 0.24; activations 2 x 1024 = 1.25; + 2.5 = 10.50 of 20.25 GiB per GPU. 2 x 2 x 4 = 16.
    Profile("12b-lora-fsdp-4xl4", "Gemma 3 12B, LoRA bf16, FSDP on 4 x L4", "g2-standard-48", 4,
            {"base_model": "google/gemma-3-12b-it", "quantization": "none", "distributed": "fsdp",
             "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, **_SEQ},
            Fit(6.51, 65.47, 0.24, 1.25, 10.50)),
)}
DEFAULT_PROFILE = "default"


# ---- Prices: USD per hour of a whole machine, by capacity ------------------------------------
#
# us-central1 Compute Engine list prices of the G2 machine (vCPUs + memory) plus its L4s, from
# SkyPilot's GCP catalog (github.com/skypilot-org/skypilot-catalog, catalogs/v8/gcp/vms.csv at
# commit 8427bbff988abdd050a9f51addd314ef31cb4e85, read 2026-11-28): g2-standard-8 $0.29358 +
# 1 x L4 $0.56004 on demand, $0.11747 + $0.2231 Spot; g2-standard-48 $1.7615 + 4 x L4
# $2.24016 on demand, $0.70483 + $0.8924 Spot. Spot prices change (at most once a day) and
# FLEX_START has no list price here, so it is estimated at the on-demand price, an upper bound.
# Vertex AI custom training bills these machines at its own training rates
# (cloud.google.com/vertex-ai/pricing), which may differ by region and over time: pass
# `--param gpu_hourly_usd=RATE` with yours and the estimate and the report use it.
MACHINE_PRICES: dict[tuple[str, Capacity], float] = {
    ("g2-standard-8", Capacity.STANDARD): 0.29358 + 0.56004,
    ("g2-standard-8", Capacity.SPOT): 0.11747 + 0.2231,
    ("g2-standard-48", Capacity.STANDARD): 1.7615 + 2.24016,
    ("g2-standard-48", Capacity.SPOT): 0.70483 + 0.8924,
}
PRICE_SOURCE = ("Compute Engine list price, us-central1, SkyPilot GCP catalog at commit 8427bbff "
                "(read 2026-11-28)")


def hourly_price(machine_type: str, capacity: Capacity | str) -> float | None:
    """USD/hour of `machine_type` on `capacity` (FLEX_START: the on-demand price), or None."""
    cap = Capacity(capacity)
    if cap is Capacity.FLEX_START:
        cap = Capacity.STANDARD
    price = MACHINE_PRICES.get((machine_type, cap))
    return None if price is None else round(price, 5)


# ---- Throughput per (profile, GPU) -------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """Training and generation speed of a profile on one machine of its kind (all its GPUs), the
    billed start of each GPU job, and where the numbers come from."""

    train_tokens_per_s: float
    generate_tokens_per_s: float  # at generation_batch_size 16
    startup_s: float  # image pull + reading (and quantizing) the weights, per GPU job
    basis: str  # "measured: where, when" or "estimated: the arithmetic"


_EST = ("estimated (pipelines/throughput.py): train = MFU {mfu} x 121 TFLOP/s x {gpus} GPU"
        "{scale} / (4 x {n}B params); generate = 16 x 300 GB/s x 0.5 / {wb} GB of weights; "
        "startup {startup:.0f} s assumed")
THROUGHPUT: dict[tuple[str, str], Throughput] = {
    ("default", "NVIDIA_L4"): Throughput(7563, 1200, 240, _EST.format(
        mfu=0.25, gpus=1, scale="", n="1.00", wb="2.00", startup=240)),
    ("4b-qlora", "NVIDIA_L4"): Throughput(1364, 743, 300, _EST.format(
        mfu=0.175, gpus=1, scale="", n="3.88", wb="3.23", startup=300)),
    ("12b-qlora", "NVIDIA_L4"): Throughput(450, 308, 420, _EST.format(
        mfu=0.175, gpus=1, scale="", n="11.77", wb="7.80", startup=420)),
    ("4b-lora-4xl4", "NVIDIA_L4"): Throughput(7016, 279, 300, _EST.format(
        mfu=0.25, gpus=4, scale=" x 0.9 (DDP)", n="3.88", wb="8.60", startup=300)),
    ("12b-lora-fsdp-4xl4", "NVIDIA_L4"): Throughput(2057, 98, 420, _EST.format(
        mfu=0.25, gpus=4, scale=" x 0.8 (FSDP)", n="11.77", wb="24.37", startup=420)),
}
