"""Compile the pipeline to a YAML template: `uv run python compile.py --help`.

The logic is `pipelines.compiler.main`, inside the package (this script is not in the wheel).
"""

from pipelines.compiler import main

if __name__ == "__main__":
    main()
