"""KFP component: register the merged model. Logic: `components.register.register`."""

from google_cloud_pipeline_components.types.artifact_types import VertexModel
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    metrics: Input[Metrics],
    train: Input[Dataset],
    display_name: str,
    serving_image: str,
    serving_max_model_len: int,
    pipeline_job: str,
    registered_model: Output[VertexModel],
    # "" (local runner): write a local record. The Vertex target passes Vertex's run-time
    # placeholders for the project and location as arguments (never in this source: the local
    # runner would try to resolve a placeholder written here).
    project: str = "",
    location: str = "",
):
    """Upload the merged model, with a vLLM serving container, as a new version of one Vertex
    Model Registry model; the output is a google.VertexModel artifact."""
    from components.register.register import lineage
    from components.register.register import register_model as run_register

    info = lineage(dict(model.metadata), model.path, dict(metrics.metadata),
                   dict(train.metadata), pipeline_job)
    record = run_register(
        model_uri=model.uri, info=info, project=project, location=location,
        display_name=display_name, serving_image=serving_image,
        max_model_len=serving_max_model_len, record_path=registered_model.path,
    )
    registered_model.metadata.update(
        {k: v for k, v in record.items() if isinstance(v, str | int | float | bool)}
    )
    if record.get("resourceName"):
        registered_model.uri = (
            f"https://{location}-aiplatform.googleapis.com/v1/{record['resourceName']}"
        )
