"""fetch-base-model from a gs:// folder, against the fake-gcs-server emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.common import modeling
from components.common.modeling import model_source
from components.common.paths import EMBEDDED_MODEL
from components.fetch_model.fetch import fetch_model

pytestmark = pytest.mark.integration


def test_gcs_model_is_fetched_and_downloaded_once_per_process(gcs, tmp_path: Path,
                                                              monkeypatch) -> None:
    from components.common import storage

    storage.upload_folder(EMBEDDED_MODEL, "gs://ckpt/models/tiny")
    fetch_model("gs://ckpt/models/tiny", tmp_path / "base")
    assert (tmp_path / "base" / "model.safetensors").read_bytes() == (
        EMBEDDED_MODEL / "model.safetensors").read_bytes()
    assert model_source(str(tmp_path / "base")) == "gs://ckpt/models/tiny"
    calls: list[str] = []
    real = modeling.download_folder
    monkeypatch.setattr(modeling, "download_folder",
                        lambda uri, dest: calls.append(uri) or real(uri, dest))
    modeling._download_once.cache_clear()
    first = modeling.resolve_model_ref("gs://ckpt/models/tiny")
    assert modeling.resolve_model_ref("gs://ckpt/models/tiny") == first
    modeling.check_target_modules("gs://ckpt/models/tiny", ["q_proj"])
    modeling.load_tokenizer("gs://ckpt/models/tiny")
    assert calls == ["gs://ckpt/models/tiny"]  # was three downloads in fine-tune alone
