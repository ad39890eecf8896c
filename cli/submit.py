"""`submit`: the console script. It assembles the command groups onto the one typer app.

    uv run submit --help                                       # every command and option
    uv run submit params                                       # parameters and defaults
    uv run submit deploy MODEL_ID@VERSION --dry-run            # serving: cli/serving.py

Every Vertex option also comes from an environment variable or a git-ignored `.env` (see each
option's help). Options before a subcommand apply to it: `submit --project P schedule list`.
"""

from __future__ import annotations

import sys

from cli import endpoints, params, run, schedule, serving  # noqa: F401 - each adds commands
from cli.app import app, load_dotenv

__all__ = ["app", "main"]


def main() -> None:
    load_dotenv()  # before parsing, so .env feeds the options' environment variables
    app(prog_name="submit", args=sys.argv[1:])


if __name__ == "__main__":
    main()
