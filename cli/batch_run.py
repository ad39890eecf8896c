"""`submit --batch`: the whole DAG on one GPU VM as one Cloud Batch job (pipelines/batch.py),
every check passed and the spend bounded before anything is created."""

from __future__ import annotations

import json
import re
from typing import Any

import typer

from cli.app import Options, note
from components.common.errors import InputError

CONSOLE = "https://console.cloud.google.com/batch/jobsDetail/regions/{r}/jobs/{j}/details?project={p}"
JOB_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def batch_spec(opts: Options) -> tuple[Any, dict[str, Any]]:
    """(pipelines.batch.BatchSpec, the estimate of both paths), or InputError."""
    from cli.submission import check_placement, preflight, resolved
    from cli.vertex import parse_labels
    from components.common.images import PLACEHOLDER_PROJECT
    from pipelines import batch
    from pipelines.compiler import default_run_id

    if not (opts.pipeline_root or "").startswith("gs://"):
        raise InputError(f"--batch writes every output through a GCS volume: pass --pipeline-root "
                         f"gs://BUCKET/PREFIX (got {opts.pipeline_root or 'none'})")
    if not opts.project or not opts.region:
        raise InputError("--batch needs --project and --region (or DOLLY_LORA_PROJECT, "
                         "DOLLY_LORA_REGION)")
    r = resolved(opts, "vertex")
    preflight(opts, r)
    image = r.settings.image
    if PLACEHOLDER_PROJECT in image or not r.settings.image_digest:
        raise InputError(f"--batch runs the image {image}, which is "
                         + ("the placeholder" if PLACEHOLDER_PROJECT in image else "not pinned")
                         + "; build it (cloudbuild.yaml) and pass --image REPO@sha256:DIGEST")
    check_placement(opts.region, r)
    job_id = opts.run_id or default_run_id()
    if not JOB_ID.match(job_id):
        raise InputError(f"--run-id {job_id!r} is not a Batch job name: lowercase letters, "
                         "digits and -, starting with a letter, at most 63")
    spot = opts.capacity.upper() != "STANDARD"
    t = r.settings.training
    costs = estimates(r, t.machine_type, "SPOT" if spot else "STANDARD", opts.max_cost,
                      opts.timeout)
    bucket, _, prefix = opts.pipeline_root.removeprefix("gs://").partition("/")
    args = ["--real-defaults", *(["--profile", opts.profile] if opts.profile else []),
            *[x for p in opts.params for x in ("--param", p)],
            *[x for s in opts.sweep for x in ("--sweep", s)],
            *(["--sweep-max-trials", str(opts.sweep_max_trials)] if opts.sweep else [])]
    from pipelines.batch import SECRET_ENV

    labels = {"pipeline": "dolly-lora", **parse_labels(opts.labels)}
    spec = batch.BatchSpec(
        project=opts.project, region=opts.region, job_id=job_id, image=image,
        bucket=bucket, prefix=prefix.strip("/"), args=args, machine_type=t.machine_type,
        accelerator_type=t.accelerator_type, accelerator_count=t.accelerator_count, spot=spot,
        max_run_seconds=int(costs["batch"]["timeout_seconds"]),
        boot_disk_gb=batch.boot_disk_gb(weights_gb(r.params)),
        secrets={SECRET_ENV[k]: v for k, v in opts.secrets.items()},
        env={"PYTHONUNBUFFERED": "1"}, labels=labels,
        service_account=opts.service_account, network=opts.network)
    return spec, costs


def weights_gb(params: dict[str, Any]) -> float:
    """The base model's bf16 weights in GB (planning/gemma3.py); a model it does not know
    gets a disk sized for Gemma 3 4B."""
    from planning.gemma3 import GEMMA3

    arch = GEMMA3.get(str(params["base_model"]))
    return 2 * arch.params / 1e9 if arch is not None else 8.6


def estimates(r: Any, machine_type: str, capacity: str, max_cost: float | None,
              timeout: str = "") -> dict[str, Any]:
    """This path's estimate (one start-up, the Compute Engine price) beside the Vertex one,
    printed on stderr; refuses above --max-cost. A run with no estimate (a model the
    throughput table does not know) needs --timeout for its max run duration."""
    from cli.sweep_submit import sweep_cost
    from pipelines.settings import run_estimate
    from planning import cost
    from planning.prices import price

    try:
        vertex = run_estimate(r.settings, r.params, price=r.overrides.get("gpu_hourly_usd"))
        vertex = sweep_cost(r, vertex)  # a sweep: every trial, one after another on the VM
    except InputError as exc:
        if not timeout or max_cost is not None:
            raise InputError(f"--batch needs a cost estimate for its max run duration, and "
                             f"there is none: {exc}; pass --timeout SECONDSs") from None
        note(f"no cost estimate ({exc}); max run duration {timeout} (--timeout)")
        return {"batch": {"timeout_seconds": float(timeout.rstrip("s"))}, "vertex": None}
    startup = vertex.startup_seconds / max(1, len(vertex.steps))
    run_s = vertex.train_seconds + vertex.generate_seconds
    p = price(machine_type, capacity)
    if p is None:
        raise InputError(f"no price for {machine_type} on {capacity} capacity")
    timeout = cost.deadline(run_s, startup)
    b = {"machine_type": machine_type, "capacity": capacity, "usd_per_hour": p.usd_per_hour,
         "run_seconds": run_s, "startup_seconds": startup, "timeout_seconds": timeout,
         "usd": (run_s + startup) / 3600 * p.usd_per_hour,
         "worst_usd": timeout / 3600 * p.usd_per_hour,
         "price_source": p.source.split("; no Vertex")[0]}
    kind = "Spot" if capacity == "SPOT" else "on demand"
    for line in [
        f"cost estimate, Cloud Batch (one VM, one start-up): {machine_type} {kind} at "
        f"${b['usd_per_hour']:.4f}/h ({b['price_source']}; Batch itself adds no fee: "
        "cloud.google.com/batch/pricing)",
        f"  GPU time {(run_s + startup) / 3600:.2f} h (start-up {startup / 60:.1f} min once), "
        f"estimated ${b['usd']:.2f}; max run duration {timeout / 3600:.2f} h (3 x run + "
        f"start-up, at least 30 min), worst case ${b['worst_usd']:.2f}",
        f"cost estimate, Vertex AI Pipelines, same run: {vertex.gpu_seconds / 3600:.2f} GPU h "
        f"({len(vertex.steps)} start-ups) at ${vertex.price_per_hour:.4f}/h "
        f"{vertex.capacity.lower()}, estimated ${vertex.usd:.2f}, worst case "
        f"${vertex.worst_usd:.2f}",
    ]:
        typer.echo(line, err=True)
    if max_cost is not None and b["worst_usd"] > max_cost:
        raise InputError(f"--batch worst case ${b['worst_usd']:.2f} (the job running to its max "
                         f"run duration; expected ${b['usd']:.2f}) is above --max-cost "
                         f"${max_cost:.2f}; raise --max-cost or lower max_steps")
    return {"batch": b, "vertex": json.loads(vertex.as_json())}


def run_batch(opts: Options, client: Any = None) -> None:
    from pipelines.batch import create_request

    spec, costs = batch_spec(opts)
    request = create_request(spec)
    if opts.dry_run:
        note(f"dry run: would create {request.parent}/jobs/{request.job_id}; nothing sent")
        print(type(request.job).to_json(request.job, indent=2, sort_keys=True,
                                        including_default_value_fields=False))
        return
    from cli.failures import require_credentials

    require_credentials("Cloud Batch")
    if client is None:
        from google.cloud import batch_v1

        client = batch_v1.BatchServiceClient()
    job = client.create_job(request=request)
    print(CONSOLE.format(r=spec.region, j=spec.job_id, p=spec.project))
    note(f"outputs: {spec.output_uri}")
    note(f"the VM (for gcloud compute ssh): submit batch status {spec.job_id} names it once it "
         f"runs, or gcloud compute instances list --filter=labels.batch-job-uid={job.uid}")
