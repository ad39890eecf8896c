"""KFP component: register the model. Logic: `components.register.register.run_register`.

`project` and `location` default to '' (the local runner writes a local record). The Vertex
target passes Vertex's run-time placeholders for them as arguments, never in this source: the
local runner would try to resolve a placeholder written here.
"""

import inspect

from components.common.component import step_component
from components.register.register import run_register

REQUIRED = inspect.Parameter.empty

register_model = step_component(
    "register_model", run_register,
    inputs={"model": "Model"}, outputs={"registered_model": "Artifact"},
    constants={"display_name": (str, REQUIRED), "serving_image": (str, REQUIRED),
               "pipeline_job": (str, REQUIRED), "project": (str, ""), "location": (str, "")},
    summary="Upload the adapter as a new version of one Vertex Model Registry model.",
)
