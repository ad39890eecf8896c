"""KFP component: deploy the registered version to an endpoint (opt-in). Logic:
`components.deploy.deploy.run_deploy_step`.

The serving machine is a compile-time constant (`pipelines.machines.serving_machine`); the
endpoint and replicas are pipeline parameters (`DeployConfig`)."""

from google_cloud_pipeline_components.types.artifact_types import VertexModel
from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components.common.component import REQUIRED, StepSpec
from components.common.images import DEFAULT_IMAGE
from components.deploy.deploy import run_deploy_step

SPEC = StepSpec(
    "deploy_model", run_deploy_step,
    inputs={"registered_model": VertexModel}, outputs={"deployment": Artifact},
    input_metadata={"registered_model_metadata": "registered_model"},
    constants={"machine_type": (str, REQUIRED), "accelerator_type": (str, REQUIRED),
               "accelerator_count": (int, REQUIRED), "image": (str, REQUIRED),
               "project": (str, ""), "location": (str, "")},
    summary="Deploy the new version; the endpoint's previous version serves until it is healthy.",
)


# Generated from the spec(s) above and the config sections by scripts/generate_components.py.
# Edit the specs or DeployConfig, not what follows.
# Every pipeline build (compile.py, submit --local) rewrites it when stale.
@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def deploy_model(
    registered_model: Input[VertexModel],
    deploy_endpoint: str,
    deploy_min_replicas: int,
    deploy_max_replicas: int,
    deploy_ttl_hours: float,
    machine_type: str,
    accelerator_type: str,
    accelerator_count: int,
    image: str,
    deployment: Output[Artifact],
    project: str = '',
    location: str = '',
):
    """Deploy the new version; the endpoint's previous version serves until it is healthy.

    Args:
        deploy_endpoint: Endpoint ID to deploy to (its previous version is replaced once the new one is healthy);
            '' reuses this project's endpoint, or creates one.
        deploy_min_replicas: Fewest serving machines.
        deploy_max_replicas: Most serving machines.
        deploy_ttl_hours: Hours until the deployed version is undeployed again (a one-run Vertex schedule created
            at deploy time); 0 = until `submit undeploy`.
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.deploy.deploy import run_deploy_step

    io = StepIO(
        inputs={'registered_model': registered_model},
        outputs={'deployment': deployment},
        input_metadata={'registered_model_metadata': 'registered_model'},
    )
    return call(run_deploy_step, arguments, io)
