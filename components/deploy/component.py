"""KFP component: deploy the registered version to an endpoint (opt-in). Logic:
`components.deploy.deploy.run_deploy_step`.

The serving machine is a compile-time constant (`pipelines.machines.SERVING_MACHINE`); the
endpoint and replicas are pipeline parameters (`DeployConfig`)."""

import inspect

from google_cloud_pipeline_components.types.artifact_types import VertexModel

from components.common.component import step_component
from components.deploy.deploy import run_deploy_step

REQUIRED = inspect.Parameter.empty

deploy_model = step_component(
    "deploy_model", run_deploy_step,
    inputs={"registered_model": VertexModel}, outputs={"deployment": "Artifact"},
    constants={"machine_type": (str, REQUIRED), "accelerator_type": (str, REQUIRED),
               "accelerator_count": (int, REQUIRED), "project": (str, ""), "location": (str, "")},
    summary="Deploy the new version; the endpoint's previous version serves until it is healthy.",
)
