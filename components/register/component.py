"""KFP component: register the tuned model. Logic: `components.register.register`."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    display_name: str,
    serving_image: str,
    pipeline_job: str,
    registered_model: Output[Artifact],
    # "" (local runner): write a local record. The Vertex target passes Vertex's run-time
    # placeholders for the project and location as arguments (never in this source: the local
    # runner would try to resolve a placeholder written here).
    project: str = "",
    location: str = "",
):
    """Upload the adapter as a new version of one Vertex Model Registry model."""
    from components.register.register import register_model as run_register

    record = run_register(
        model_uri=model.uri,
        model_metadata=dict(model.metadata),
        project=project,
        location=location,
        display_name=display_name,
        serving_image=serving_image,
        pipeline_job=pipeline_job,
        record_path=registered_model.path,
        model_dir=model.path,
    )
    registered_model.metadata.update(record)
    if record.get("resourceName"):
        registered_model.uri = (
            f"https://{location}-aiplatform.googleapis.com/v1/{record['resourceName']}"
        )
