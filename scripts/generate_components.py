"""Write the component signatures (components/<step>/component.py, below each StepSpec) and the
pipeline signature (pipelines/signature.py) from the config sections:

    uv run python scripts/generate_components.py           # rewrite what is stale
    uv run python scripts/generate_components.py --check   # exit 1 naming it, write nothing

compile.py and `submit --local` rewrite a stale file themselves before building the pipeline;
this is for doing it on its own (and for CI's --check). The logic is `pipelines.generate`.
"""

from pipelines.generate import main

if __name__ == "__main__":
    main()
