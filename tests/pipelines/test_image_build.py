"""The image recipe: built from uv.lock only, CUDA base for the L4, pushed by Cloud Build."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_installs_exactly_the_lock() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml uv.lock" in text
    assert text.count("uv sync --frozen --no-dev") == 2  # deps layer, then the project
    assert "pip install" not in text
    assert "ARG CUDA_BASE=nvidia/cuda:13." in text  # torch 2.15 in the lock is a CUDA 13 build
    assert "PATH=/opt/venv/bin:$PATH" in text  # KFP runs `python3 -m kfp.dsl.executor_main`
    lock = (ROOT / "uv.lock").read_text()
    assert 'name = "torch"\nversion = "2.15.0"' in lock and 'name = "nvidia-cudnn-cu13"' in lock


def test_cloudbuild_tags_with_commit() -> None:
    cb = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    assert any(i.endswith(":${_TAG}") for i in cb["images"])
    assert "${SHORT_SHA}" in cb["substitutions"]["_TAG"]
    assert all("-docker.pkg.dev/${PROJECT_ID}/" in i for i in cb["images"])
