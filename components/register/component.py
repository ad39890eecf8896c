"""KFP component: register the merged model. Logic: `components.register.register.run_register`.

The output is a `google.VertexModel` artifact, which the console links to the registry entry.
`project` and `location` default to '' (the local runner writes a local record). The Vertex
target passes Vertex's run-time placeholders for them as arguments, never in this source: the
local runner would try to resolve a placeholder written here.
"""

import inspect

from google_cloud_pipeline_components.types.artifact_types import VertexModel

from components.common.component import step_component
from components.register.register import run_register

REQUIRED = inspect.Parameter.empty

register_model = step_component(
    "register_model", run_register,
    inputs={"model": "Model", "metrics": "Metrics", "train": "Dataset"},
    outputs={"registered_model": VertexModel},
    constants={"display_name": (str, REQUIRED), "pipeline_job": (str, REQUIRED),
               "project": (str, ""), "location": (str, "")},
    summary="Upload the merged model, with a vLLM serving container, as a new version of one "
    "Vertex Model Registry model; the output is a google.VertexModel artifact.",
)
