"""The one container image every component runs in.

Why one: the image is built from `uv.lock` (the same lock as the laptop and CI), so every step
has the same packages, and components never install anything at runtime
(`install_kfp_package=False`, no `packages_to_install`). The value is fixed at import so that
compiling needs no environment; `compile.py --image` (or `DOLLY_LORA_IMAGE`) swaps in the real
one at compile time (`pipelines.settings.CompileSettings`).
"""

DEFAULT_IMAGE = "us-central1-docker.pkg.dev/your-project/dolly-lora/trainer:latest"
"""A well-formed placeholder: compiles anywhere, and `submit` refuses to send it to Vertex."""

PLACEHOLDER_PROJECT = "/your-project/"
