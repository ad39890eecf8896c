"""`submit`: the console script. It assembles the command groups onto the one typer app.

    uv run submit --help                                       # every command and option
    uv run submit params                                       # parameters and defaults
    uv run submit deploy MODEL_ID@VERSION --dry-run            # serving: cli/serving.py

Every Vertex option also comes from an environment variable or a git-ignored `.env` (see each
option's help). Options before a subcommand apply to it: `submit --project P schedule list`.
"""

from __future__ import annotations

import sys

from cli import batch, endpoints, params, run, schedule, serving  # noqa: F401 - each adds commands
from cli.app import app, fail, load_dotenv

__all__ = ["app", "main"]


def main() -> None:
    load_dotenv()  # before parsing, so .env feeds the options' environment variables
    hydra_override(sys.argv[1:])
    app(prog_name="submit", args=sys.argv[1:])


def hydra_override(args: list[str]) -> None:
    """`training.num_epochs=2` (a Hydra override, as the course writes it) as a positional
    argument: one line with the --param that does it, not typer's "No such command"."""
    import difflib
    import re

    if not any(re.fullmatch(r"\+{0,2}[A-Za-z_][\w.]*=.*", a) for a in args):
        return
    import typer.main

    valued = {o for p in typer.main.get_command(app).params
              if not getattr(p, "is_flag", False) for o in p.opts}
    for i, arg in enumerate(args):
        m = re.fullmatch(r"\+{0,2}([A-Za-z_][\w.]*)=(.*)", arg)
        if not m or (i > 0 and args[i - 1] in valued):  # an option's value (--param a=b)
            continue
        if any(not a.startswith("-") for a in args[:i] if a not in valued):
            return  # after a subcommand: its own arguments (predict "x=y" ...)
        from components.common.config import parameter_defaults

        names = list(parameter_defaults())
        key, whole = m.group(1).rsplit(".", 1)[-1], m.group(1).replace(".", "_")
        near = next((k for k in (key, whole) if k in names), None) or next(iter(
            difflib.get_close_matches(whole, names, n=1, cutoff=0.6)
            + difflib.get_close_matches(key, names, n=1, cutoff=0.6)), None)
        hint = f"--param {near}={m.group(2)}" if near else "--param NAME=VALUE (submit params lists them)"
        try:
            fail(f"{arg!r} is not a command; pipeline settings are given as {hint}")
        except typer.Exit as exc:  # outside the app: exit as it would
            raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
