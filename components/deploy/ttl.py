"""The deployment's time to live: a one-run Vertex schedule of a one-step undeploy pipeline,
created before the model is deployed.

Why on Vertex's own machinery: nothing on a laptop (or in the deploying pipeline) has to stay
awake for hours. Why before the DeployModel call: a deployment that outlives the deploy step's
wait is still in flight when the step gives up; the TTL run undeploys it all the same. The run
undeploys the models of this one version from the endpoint (never another version deployed
there later), and deletes the endpoint only if the deploy created it and nothing is left on it.
"""

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["parse_until_label", "ttl_pipeline_spec", "ttl_schedule_request", "ttl_until",
           "undeploy_after_ttl", "until_label"]

TTL_PIPELINE = "dolly-lora-ttl-undeploy"
# Any minute after start_time; max_run_count=1 makes it the only run.
TTL_CRON = "* * * * *"


def undeploy_after_ttl(project: str, location: str, endpoint: str, model: str,
                       delete_endpoint: bool) -> str:
    """The TTL pipeline's one step: undeploy the deployed models of `model` (a version,
    `projects/P/locations/R/models/ID@V`) from `endpoint`, then delete the endpoint when asked
    and nothing is left on it. What is already gone is no error (`submit undeploy` ran first).
    Self-contained (the GAPIC client only): it runs alone, hours after the deploy."""
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1 as v1

    client = v1.EndpointServiceClient(
        client_options={"api_endpoint": f"{location}-aiplatform.googleapis.com"})
    try:
        current = client.get_endpoint(name=endpoint)
    except exceptions.NotFound:
        print(f"{endpoint} is gone already")
        return "gone"
    base, _, version = model.partition("@")
    left = 0
    for d in list(current.deployed_models):
        if d.model.split("@")[0] == base and d.model_version_id == version:
            print(f"undeploying {d.id} ({model}) from {endpoint}: its time to live has passed")
            client.undeploy_model(endpoint=endpoint, deployed_model_id=d.id).result(timeout=1800)
        else:
            left += 1
    if delete_endpoint and not left:
        print(f"deleting {endpoint}, which the deploy created")
        client.delete_endpoint(name=endpoint).result(timeout=600)
        return "deleted"
    return "undeployed"


def ttl_pipeline_spec(image: str) -> dict[str, Any]:
    """The undeploy pipeline, compiled here (the deploy step has kfp), running in `image`."""
    import yaml
    from kfp import compiler, dsl

    step = dsl.component(undeploy_after_ttl, base_image=image, install_kfp_package=False)

    @dsl.pipeline(name=TTL_PIPELINE, description="Undeploy a dolly-lora model version when its "
                  "time to live has passed.")
    def ttl_undeploy(project: str, location: str, endpoint: str, model: str,
                     delete_endpoint: bool = False) -> None:
        task = step(project=project, location=location, endpoint=endpoint, model=model,
                    delete_endpoint=delete_endpoint)
        task.set_caching_options(False)
        task.set_display_name("undeploy")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ttl.yaml"
        compiler.Compiler().compile(ttl_undeploy, str(path))
        return yaml.safe_load(path.read_text())


def ttl_until(hours: float, now: dt.datetime | None = None) -> dt.datetime:
    now = now or dt.datetime.now(dt.UTC)
    return (now + dt.timedelta(hours=hours)).replace(microsecond=0)


def until_label(when: dt.datetime) -> str:
    """A label value (lowercase, no ':'): 2026-12-07T17:00Z -> 20261207t1700z."""
    return when.astimezone(dt.UTC).strftime("%Y%m%dt%H%Mz")


def parse_until_label(value: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(value, "%Y%m%dt%H%Mz").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def ttl_schedule_request(
    *, project: str, region: str, endpoint: str, model_version: str, delete_endpoint: bool,
    until: dt.datetime, image: str, pipeline_root: str, service_account: str = "",
) -> Any:
    """The CreateScheduleRequest: one run of the undeploy pipeline, at the first minute after
    `until`."""
    from google.cloud.aiplatform_v1 import types as t
    from google.protobuf import struct_pb2

    from components.common.serving import label_value

    parent = f"projects/{project}/locations/{region}"
    spec = struct_pb2.Struct()
    spec.update(ttl_pipeline_spec(image))
    params = {"project": project, "location": region, "endpoint": endpoint,
              "model": model_version, "delete_endpoint": delete_endpoint}
    endpoint_id = endpoint.rsplit("/", 1)[-1]
    labels = {"source": "dolly-lora", "ttl-endpoint": endpoint_id,
              "ttl-model": label_value(model_version.rsplit("/", 1)[-1].replace("@", "-v"))}
    job = t.PipelineJob(
        display_name=f"{TTL_PIPELINE}-{endpoint_id}", pipeline_spec=spec, labels=labels,
        service_account=service_account,
        runtime_config=t.PipelineJob.RuntimeConfig(
            gcs_output_directory=pipeline_root,
            parameter_values={k: _value(v) for k, v in params.items()}),
    )
    schedule = t.Schedule(
        display_name=f"{TTL_PIPELINE}-{endpoint_id}-{until_label(until)}"[:128],
        cron=TTL_CRON, start_time=until, max_run_count=1, max_concurrent_run_count=1,
        create_pipeline_job_request=t.CreatePipelineJobRequest(parent=parent, pipeline_job=job),
    )
    return t.CreateScheduleRequest(parent=parent, schedule=schedule)


def _value(v: Any) -> Any:
    from google.protobuf import struct_pb2

    return struct_pb2.Value(bool_value=v) if isinstance(v, bool) else \
        struct_pb2.Value(string_value=str(v))


def schedule_client(region: str, credentials: Any = None) -> Any:
    from google.cloud.aiplatform_v1 import ScheduleServiceClient

    return ScheduleServiceClient(
        credentials=credentials,
        client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"})
