"""The Cloud Batch job that runs the whole DAG on one GPU VM: the project's image running the
local runner (`submit --local`) with the outputs and checkpoints on the bucket Batch mounts.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any

# Batch mounts a GCS volume at a path under /mnt/disks/ (cloud.google.com/batch/docs/
# create-run-job-storage#use-bucket).
MOUNT_PATH = "/mnt/disks/runs"
# Batch's exit code for a task whose Spot VM was preempted (cloud.google.com/batch/docs/
# troubleshooting#reserved-exit-codes: 50001). Only it is retried: a RETRY_TASK policy retries
# the codes it names and fails every other (cloud.google.com/batch/docs/automate-task-retries),
# since any other failure is a bug or bad data, and a retry would bill the same failure again.
PREEMPTED_EXIT_CODE = 50001
MAX_RETRIES = 3
# The boot disk holds the OS (~10 GB), the image (9.0 GB unpacked plus its 5.0 GB compressed
# layers while pulling: scripts/container_check.sh measures both), the room the image
# gets to write (~10 GB) and the Hugging Face cache (the model's weights, twice while merging):
# 35 GB + 3 x weights, rounded up to 10 GB, never below this floor.
BOOT_DISK_FLOOR_GB = 100
IMAGE_UNPACKED_GB = 35
SECRET_ENV = {"hf_token_secret": "HF_TOKEN", "wandb_api_key_secret": "WANDB_API_KEY",
              "mlflow_token_secret": "MLFLOW_TRACKING_TOKEN"}


def boot_disk_gb(weights_gb: float) -> int:
    """Boot disk size for the image and a model of `weights_gb` (see IMAGE_UNPACKED_GB)."""
    return max(BOOT_DISK_FLOOR_GB, math.ceil((IMAGE_UNPACKED_GB + 3 * weights_gb) / 10) * 10)


def secret_version(name: str) -> str:
    """projects/P/secrets/NAME -> its latest version, as Batch's secretVariables want it."""
    return name if "/versions/" in name else f"{name}/versions/latest"


def task_script(run_name: str, output_dir: str, args: list[str]) -> str:
    """The task's shell command: the first attempt starts the run; a retried attempt (after a
    preemption) finds the run's run.json on the bucket and resumes it, whose fine-tune starts
    from the newest checkpoint in the run folder."""
    out, run = shlex.quote(output_dir), shlex.quote(run_name)
    start = shlex.join(["python", "-m", "cli.submit", "--local", "--run-id", run_name,
                        "--output-dir", output_dir, *args])
    resume = shlex.join(["python", "-m", "cli.submit", "--local", "--resume", run_name,
                         "--output-dir", output_dir])
    return (f'if [ -f {out}/{run}/run.json ]; then echo "resuming run {run_name}"; exec {resume}; '
            f"else exec {start}; fi")


@dataclass
class BatchSpec:
    """Everything the job needs, worked out by the CLI (cli/batch_run.py)."""

    project: str
    region: str
    job_id: str
    image: str
    bucket: str
    prefix: str
    args: list[str]
    machine_type: str
    accelerator_type: str
    accelerator_count: int
    spot: bool
    max_run_seconds: int
    boot_disk_gb: int
    secrets: dict[str, str] = field(default_factory=dict)  # env var -> Secret Manager name
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    service_account: str = ""
    network: str = ""

    @property
    def output_dir(self) -> str:
        return f"{MOUNT_PATH}/{self.prefix}".rstrip("/")

    @property
    def output_uri(self) -> str:
        return "/".join(p for p in (f"gs://{self.bucket}", self.prefix, self.job_id) if p) + "/"


def gce_accelerator(accelerator_type: str) -> str:
    """Vertex's NVIDIA_L4 -> Compute Engine's nvidia-l4."""
    return accelerator_type.lower().replace("_", "-")


def build_job(s: BatchSpec) -> Any:
    """The batch_v1.Job: one task group, one task, one VM."""
    from google.cloud import batch_v1
    from google.protobuf import duration_pb2

    runnable = batch_v1.Runnable(container=batch_v1.Runnable.Container(
        image_uri=s.image, entrypoint="/bin/sh",
        commands=["-c", task_script(s.job_id, s.output_dir, s.args)],
        volumes=[f"{MOUNT_PATH}:{MOUNT_PATH}"]))
    env = batch_v1.Environment(
        variables=s.env, secret_variables={k: secret_version(v) for k, v in s.secrets.items()})
    task = batch_v1.TaskSpec(
        runnables=[runnable], environment=env,
        compute_resource=batch_v1.ComputeResource(cpu_milli=4000, memory_mib=16384),
        max_run_duration=duration_pb2.Duration(seconds=s.max_run_seconds),
        max_retry_count=MAX_RETRIES,
        lifecycle_policies=[
            batch_v1.LifecyclePolicy(
                action=batch_v1.LifecyclePolicy.Action.RETRY_TASK,
                action_condition=batch_v1.LifecyclePolicy.ActionCondition(
                    exit_codes=[PREEMPTED_EXIT_CODE])),
        ],
        volumes=[batch_v1.Volume(gcs=batch_v1.GCS(remote_path=s.bucket),
                                 mount_path=MOUNT_PATH)])
    policy = batch_v1.AllocationPolicy.InstancePolicy(
        machine_type=s.machine_type,
        provisioning_model=(batch_v1.AllocationPolicy.ProvisioningModel.SPOT if s.spot
                            else batch_v1.AllocationPolicy.ProvisioningModel.STANDARD),
        accelerators=[batch_v1.AllocationPolicy.Accelerator(
            type_=gce_accelerator(s.accelerator_type), count=s.accelerator_count)],
        boot_disk=batch_v1.AllocationPolicy.Disk(type_="pd-balanced",
                                                 size_gb=s.boot_disk_gb))
    allocation = batch_v1.AllocationPolicy(
        instances=[batch_v1.AllocationPolicy.InstancePolicyOrTemplate(
            policy=policy, install_gpu_drivers=True)],
        location=batch_v1.AllocationPolicy.LocationPolicy(
            allowed_locations=[f"regions/{s.region}"]),
        labels=s.labels)
    if s.service_account:
        allocation.service_account = batch_v1.ServiceAccount(email=s.service_account)
    if s.network:
        allocation.network = batch_v1.AllocationPolicy.NetworkPolicy(network_interfaces=[
            batch_v1.AllocationPolicy.NetworkInterface(network=s.network)])
    return batch_v1.Job(
        task_groups=[batch_v1.TaskGroup(task_spec=task, task_count=1, parallelism=1)],
        allocation_policy=allocation, labels=s.labels,
        logs_policy=batch_v1.LogsPolicy(
            destination=batch_v1.LogsPolicy.Destination.CLOUD_LOGGING))


def create_request(s: BatchSpec) -> Any:
    from google.cloud import batch_v1

    return batch_v1.CreateJobRequest(parent=f"projects/{s.project}/locations/{s.region}",
                                     job_id=s.job_id, job=build_job(s))
