"""KFP components: evaluate base vs tuned, and the gate that publishes the verdict.

Logic: `components.evaluate.evaluate` (`run_evaluate`, `run_gate`).

`evaluate` runs on the GPU machine (a Vertex custom job there, so it can use Spot capacity like
training) and writes everything into its results file. `gate` is a small CPU step that reads
that file, publishes the Metrics artifact the console shows, and returns `tuned_better` for the
registry's `dsl.If`: True when the lower end of the paired-bootstrap 95% interval of the
improvement on the headline metric exceeds `gate_threshold`. Why two steps: a custom job's
output parameters and artifact metadata do not reach the pipeline; a plain task's do.
"""

import inspect

from components.common.component import step_component
from components.evaluate.evaluate import run_evaluate, run_gate

evaluate = step_component(
    "evaluate", run_evaluate,
    inputs={"base": "Model", "test": "Dataset", "model": "Model"},
    outputs={"generations": "Artifact"},
    constants={"required_accelerator": (str, inspect.Parameter.empty)},
    summary="Per-category loss, perplexity, ROUGE-L and exact match for base and tuned, with "
    "the bootstrap interval of the improvement, into one results file.",
)

gate = step_component(
    "gate", run_gate, inputs={"generations": "Artifact"}, outputs={"metrics": "Metrics"},
    returns=bool,
    summary="Publish evaluate's numbers as Metrics and return whether the tuned model passes "
    "the gate.",
)
