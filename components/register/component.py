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
    # Literal defaults (the component's source is shipped alone, without module constants):
    # Vertex resolves these placeholders at run time, as gcpc does; the local target passes ""
    # instead, which writes a local record.
    project: str = "{{$.pipeline_google_cloud_project_id}}",
    location: str = "{{$.pipeline_google_cloud_location}}",
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
    )
    registered_model.metadata.update(record)
    if record.get("resourceName"):
        registered_model.uri = (
            f"https://{location}-aiplatform.googleapis.com/v1/{record['resourceName']}"
        )
