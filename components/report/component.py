"""KFP component: the run report. Logic: `components.report.report.run_report`."""

import inspect

from components.common.component import step_component
from components.report.report import run_report

report = step_component(
    "report", run_report,
    inputs={"train": "Dataset", "validation": "Dataset", "test": "Dataset", "rejected": "Dataset",
            "model": "Model", "generations": "Artifact", "predictions": "Dataset"},
    outputs={"html": "HTML", "markdown": "Markdown"},
    constants={"gpu_steps": (str, inspect.Parameter.empty)},
    summary="Loss curves, base vs tuned per category with intervals, samples, data, time and cost.",
)
