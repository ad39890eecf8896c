"""`submit params`: every pipeline parameter, its default and the embedded default's value."""

from __future__ import annotations

import typer

from cli.app import app


@app.command("params")
def list_params() -> None:
    """List every pipeline parameter with its default and the embedded default's value."""
    from components.common.config import parameter_defaults, parameter_help
    from planning.profiles import LOCAL_PROFILE, PROFILES

    helps = parameter_help()
    embedded = PROFILES[LOCAL_PROFILE].params
    for name, default in parameter_defaults().items():
        local = f"  [local: {embedded[name]!r}]" if name in embedded else ""
        typer.echo(f"{name} = {default!r}{local}\n    {helps[name]}")
