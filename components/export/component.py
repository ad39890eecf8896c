"""KFP component: merge the adapter into the base and check it. Logic:
`components.export.merge.run_export`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def export(
    base: Input[Model],
    model: Input[Model],
    test: Input[Dataset],
    export_dtype: str,
    merged: Output[Model],
    adapter: Output[Model],
):
    """The merged model (safetensors, tokenizer, chat template, generation config) that a
    serving container loads, checked against base+adapter; the adapter alone beside it."""
    from components.export.merge import run_export

    merged.metadata.update(
        run_export(model.path, base.path, merged.path, adapter.path, test.path, export_dtype)
    )
    adapter.metadata.update({"base_model": merged.metadata.get("base_model", "")})
