"""`submit --resume JOB` on Vertex: the new job takes the old run's name, so fine-tune finds its
checkpoints (`<checkpoint_uri>/<run_name>/fine-tune/`) and continues from the last one.

Why the run name and not the job: a Vertex job id is used once, and the run name defaults to
the job name, so a plain resubmit would start again from step 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from components.common.errors import InputError

JOB_NAME = re.compile(r"^projects/[^/]+/locations/(?P<region>[^/]+)/pipelineJobs/(?P<id>[^/]+)$")


@dataclass(frozen=True)
class Resume:
    job: str  # the old job's resource name
    run_name: str
    checkpoint_uri: str
    state: str = ""  # the old job's state, when it was read


def job_name(job: str, project: str, region: str) -> str:
    if m := JOB_NAME.match(job.strip()):
        if m["region"] != region:
            raise InputError(f"job {job} ran in {m['region']}; resume it there (--region "
                             f"{m['region']}): its checkpoints and template are regional")
        return job.strip()
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,127}", job.strip()):
        raise InputError(f"--resume {job!r} is not a pipeline job; give its id (as `submit` "
                         "printed it) or projects/P/locations/R/pipelineJobs/ID")
    return f"projects/{project}/locations/{region}/pipelineJobs/{job.strip()}"


def read_job(name: str, region: str, credentials: Any = None) -> Any:
    """The old PipelineJob (one GET), or InputError when there is none."""
    from google.api_core import exceptions
    from google.cloud.aiplatform_v1 import PipelineServiceClient

    client = PipelineServiceClient(credentials=credentials, client_options={
        "api_endpoint": f"{region}-aiplatform.googleapis.com"})
    try:
        return client.get_pipeline_job(name=name)
    except exceptions.NotFound:
        raise InputError(f"--resume: pipeline job {name} does not exist; list them with "
                         f"`gcloud ai pipeline-jobs list --region {region}`") from None


def resume(job: str, project: str, region: str, new_job_id: str, checkpoint_uri: str,
           dry_run: bool) -> Resume:
    """What the new job continues: the old job's run name (its `run_name` parameter, else its
    id) and checkpoint folder (`--checkpoint-uri` wins). A dry run reads nothing: the job id
    is taken as the run name, which is what a job submitted without run_name used."""
    name = job_name(job, project, region)
    old_id = name.rsplit("/", 1)[-1]
    if new_job_id == old_id:
        raise InputError(f"--run-id {new_job_id} is the job being resumed; Vertex job ids are "
                         "used once: leave --run-id out or give a new one")
    run_name, uri, state = old_id, checkpoint_uri, ""
    if not dry_run:
        old = read_job(name, region)
        values = dict(old.runtime_config.parameter_values)
        run_name = str(values.get("run_name") or old_id)
        uri = checkpoint_uri or str(values.get("checkpoint_uri") or "")
        state = old.state.name if hasattr(old.state, "name") else str(old.state)
    if not uri:
        raise InputError(f"--resume {old_id}: there is nothing to continue from without "
                         "checkpoints; pass the old run's --checkpoint-uri gs://BUCKET/PREFIX")
    return Resume(job=name, run_name=run_name, checkpoint_uri=uri, state=state)
