"""Shared fixtures. Every test runs offline: W&B offline into a temp dir, no hub access."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tests.signature_snapshot  # noqa: F401 - first: the signature files before any build
from components.common.paths import EMBEDDED_DATASET, EMBEDDED_MODEL
from tests.cli.vertex_fakes import vertex_metadata  # noqa: F401 - fixture (Vertex Experiments)


@pytest.fixture(autouse=True)
def offline_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network, no writes under ~: W&B offline in a temp dir, the hub switched off."""
    wandb_dir = tmp_path_factory.mktemp("wandb")
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR",
                "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(wandb_dir))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def dolly_rows() -> list[dict]:
    return [json.loads(line) for line in EMBEDDED_DATASET.read_text().splitlines()]


@pytest.fixture(scope="session")
def tiny_model_ref() -> str:
    assert EMBEDDED_MODEL.exists()
    return "embedded://tiny-gemma3"


@pytest.fixture(scope="session")
def tokenizer(tiny_model_ref: str):
    from components.common.modeling import load_tokenizer

    return load_tokenizer(tiny_model_ref)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch):
    """A fresh fake-gcs-server with bucket `ckpt`; STORAGE_EMULATOR_HOST points at it (and is
    inherited by subprocesses started from the test)."""
    from tests.gcs_emulator import GcsEmulator

    emu = GcsEmulator().start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emu.url)
    emu.create_bucket("ckpt")
    yield emu
    emu.close()
