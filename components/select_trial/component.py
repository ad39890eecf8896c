"""KFP component: choose a sweep's winner. Logic: `components.select_trial.select`."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.common.component import StepSpec
from components.common.images import DEFAULT_IMAGE
from components.select_trial.select import run_select_trial

SPEC = StepSpec(
    "select_trial", run_select_trial,
    inputs={"models": Model}, collected=("models",),
    outputs={"winner": Model, "sweep": Artifact},
    summary="Compare the sweep's trials on the validation split (paired interval) and pass the "
    "winner's adapter on, with sweep.json for the report.",
)


# Generated from the spec(s) above and the config sections by scripts/generate_components.py.
# Edit the specs or NoParameters, not what follows.
# Every pipeline build (compile.py, submit --local) rewrites it when stale.
@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def select_trial(
    models: Input[list[Model]],
    winner: Output[Model],
    sweep: Output[Artifact],
):
    """Compare the sweep's trials on the validation split (paired interval) and pass the winner's
    adapter on, with sweep.json for the report.

    Args:
    """
    arguments = dict(locals())
    from components.common.step import StepIO, call
    from components.select_trial.select import run_select_trial

    io = StepIO(
        inputs={'models': models},
        outputs={'winner': winner, 'sweep': sweep},
    )
    return call(run_select_trial, arguments, io)
