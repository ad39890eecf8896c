"""`submit`: run the pipeline locally or on Vertex AI Pipelines.

    uv run python compile.py && uv run submit --local          # whole DAG, offline, embedded default
    uv run submit --local --param max_steps=20                 # any pipeline parameter
    uv run submit params                                       # list parameters and defaults

Heavy imports (kfp, torch, aiplatform) happen inside the commands that need them, so `--help`
answers at once. Secrets come from the environment or a git-ignored `.env`, never parameters.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="Run the Dolly LoRA pipeline locally (KFP local runner) or on Vertex AI Pipelines.",
)


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _load_dotenv() -> None:
    """Secrets (WANDB_API_KEY, HF_TOKEN) from a git-ignored .env; the environment wins."""
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)


@app.callback(invoke_without_command=True)
def submit(
    ctx: typer.Context,
    local: Annotated[
        bool, typer.Option("--local", help="Run with KFP's local runner on this machine.")
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Pipeline parameter override, name=value (repeat)."),
    ] = None,
    real_defaults: Annotated[
        bool,
        typer.Option(
            "--real-defaults",
            help="Locally, start from the real job's defaults (Gemma 3 1B, Dolly-15k from the "
            "hub) instead of the embedded tiny default.",
        ),
    ] = False,
    run_id: Annotated[
        str | None, typer.Option(help="Name of this run (default: dolly-lora-<timestamp>).")
    ] = None,
    output_dir: Annotated[
        Path, typer.Option(help="Where local runs write their outputs and summary.json.")
    ] = Path("runs"),
    checkpoint_uri: Annotated[
        str | None,
        typer.Option(
            help="gs://BUCKET/PREFIX for resumable fine-tune checkpoints (STORAGE_EMULATOR_HOST "
            "for an emulator); rerun with the same --run-id to resume.",
        ),
    ] = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from components.common.errors import InputError

    _load_dotenv()
    run_id = run_id or "dolly-lora-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        if not local:
            _fail("Vertex AI submission is not available yet; use --local")
        from cli.params import resolve_parameters
        from components.common.config import EMBEDDED_DEFAULT

        overrides = list(param or [])
        if checkpoint_uri:
            overrides.append(f"checkpoint_uri={checkpoint_uri}")
        # The run id names the checkpoint folder, so the same --run-id finds it again.
        profile = {**({} if real_defaults else EMBEDDED_DEFAULT), "run_name": run_id}
        params = resolve_parameters(profile, overrides)
        from cli.local_run import run_local

        summary = run_local(params, output_dir, run_id)
    except InputError as exc:
        _fail(str(exc))
    import json

    print(summary)
    if json.loads(summary.read_text())["status"] != "SUCCESS":
        raise typer.Exit(1)


@app.command("params")
def list_params() -> None:
    """List every pipeline parameter with its default and the embedded default's value."""
    from components.common.config import EMBEDDED_DEFAULT, parameter_defaults, parameter_help

    helps = parameter_help()
    for name, default in parameter_defaults().items():
        local = f"  [local: {EMBEDDED_DEFAULT[name]!r}]" if name in EMBEDDED_DEFAULT else ""
        typer.echo(f"{name} = {default!r}{local}\n    {helps[name]}")


def main() -> None:
    app(prog_name="submit", args=sys.argv[1:])


if __name__ == "__main__":
    main()
