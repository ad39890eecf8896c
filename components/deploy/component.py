"""KFP component: deploy the registered version to an endpoint (opt-in). Logic:
`components.deploy.deploy.run_deploy`."""

from google_cloud_pipeline_components.types.artifact_types import VertexModel
from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def deploy_model(
    registered_model: Input[VertexModel],
    deploy_endpoint: str,
    deploy_min_replicas: int,
    deploy_max_replicas: int,
    machine_type: str,
    accelerator_type: str,
    accelerator_count: int,
    deployment: Output[Artifact],
    project: str = "",
    location: str = "",
):
    """Deploy the new version; the endpoint's previous version serves until it is healthy."""
    from components.deploy.deploy import run_deploy

    record = run_deploy(
        registered=dict(registered_model.metadata), project=project, location=location,
        endpoint=deploy_endpoint, machine_type=machine_type, accelerator_type=accelerator_type,
        accelerator_count=accelerator_count, min_replicas=deploy_min_replicas,
        max_replicas=deploy_max_replicas, record_path=deployment.path,
    )
    deployment.metadata.update({k: v for k, v in record.items() if isinstance(v, str | bool)})
