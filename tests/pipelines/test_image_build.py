"""The image recipe: built from uv.lock only, CUDA 12 for every L4 driver, non-root, no cache."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_installs_exactly_the_lock() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml uv.lock ./" in text  # README.md joins later, with the code
    assert text.count("uv sync --locked --no-dev") == 2  # deps layer, then the project
    assert "pip install" not in text
    assert "UV_NO_CACHE=1" in text  # the 5.9 GB download cache stays out of every layer
    assert "PATH=/opt/venv/bin:$PATH" in text  # the executor runs the venv's `python3`
    assert "USER ${APP_USER}" in text and "ARG APP_USER=app" in text


def test_torch_runs_on_every_l4_driver() -> None:
    """CUDA 12.x runs on any R525+ driver, which every L4 host has; CUDA 13 needs R580+."""
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG CUDA_BASE=nvidia/cuda:12.8" in text
    assert "startswith('12.')" in text  # the build fails on a torch built for another CUDA
    lock = (ROOT / "uv.lock").read_text()
    torch = re.search(r'\[\[package\]\]\nname = "torch"\nversion = "([^"]+)"', lock)
    assert torch and torch.group(1).startswith("2.10.")
    assert 'name = "nvidia-cuda-runtime-cu12"' in lock and 'name = "cuda-toolkit"' not in lock
    assert '"torch>=2.6,<2.11"' in (ROOT / "pyproject.toml").read_text()


def test_cloudbuild_always_has_a_tag() -> None:
    """Run by hand, SHORT_SHA is empty: the tag falls back instead of `trainer:`."""
    cb = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    assert cb["substitutions"]["_TAG"] == ""
    script = cb["steps"][0]["args"][-1]
    assert "${_TAG}" in script and "${SHORT_SHA}" in script and "build-${BUILD_ID}" in script
    assert "images" not in cb  # pushed by a step, with the tag worked out at run time


def final_stage_env(text: str) -> dict[str, str]:
    """The ENV values of the Dockerfile's last stage (continuations joined, quotes removed)."""
    import shlex

    lines = re.sub(r"\\\n", " ", text).splitlines()
    last = max(i for i, line in enumerate(lines) if line.strip().upper().startswith("FROM "))
    env: dict[str, str] = {}
    for line in lines[last:]:
        if line.strip().upper().startswith("ENV "):
            env.update(item.split("=", 1) for item in shlex.split(line.strip()[4:]))
    return env


def test_the_driver_check_of_the_cuda_base_is_off() -> None:
    """The base's NVIDIA_REQUIRE_CUDA (cuda>=12.8) makes the container toolkit refuse a host
    whose driver is older than 12.8's, though 12.x minor-version compatibility runs it there."""
    env = final_stage_env((ROOT / "Dockerfile").read_text())
    assert env["NVIDIA_DISABLE_REQUIRE"] == "1"
    assert env["UV_NO_CACHE"] == "1" and env["PATH"] == "/opt/venv/bin:$PATH"  # the parse works
    assert "NVIDIA_REQUIRE_CUDA" not in env
