"""The one container image every component runs in.

Why one: the image is built from `uv.lock` (the same lock as the laptop and CI), so every step
has the same packages, and components never install anything at runtime
(`install_kfp_package=False`, no `packages_to_install`). The value is fixed at import so that
compiling needs no environment; `compile.py --image` swaps it in the compiled spec.
"""

DEFAULT_IMAGE = "us-docker.pkg.dev/YOUR_PROJECT/dolly-lora/trainer:latest"
