"""Secrets by resource name at runtime, and the local registry record behind the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.common.secrets import load_secrets, version_name
from components.register.register import register_model


class FakeSecretManager:
    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.asked = values, []

    def access_secret_version(self, name: str) -> Any:
        self.asked.append(name)
        payload = type("P", (), {"data": self.values[name].encode()})()
        return type("R", (), {"payload": payload})()


def test_load_secrets_sets_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    client = FakeSecretManager({"projects/p/secrets/hf/versions/latest": "hf_value\n",
                                "projects/p/secrets/wb/versions/3": "wb_value"})
    done = load_secrets({"hf_token_secret": "projects/p/secrets/hf",
                         "wandb_api_key_secret": "projects/p/secrets/wb/versions/3"}, client)
    assert sorted(done) == ["HF_TOKEN", "WANDB_API_KEY"]
    import os

    assert os.environ["HF_TOKEN"] == "hf_value" and os.environ["WANDB_API_KEY"] == "wb_value"
    assert client.asked[0] == "projects/p/secrets/hf/versions/latest"


def test_empty_names_do_nothing() -> None:
    assert load_secrets({"hf_token_secret": "", "wandb_api_key_secret": ""}, client=object()) == []


def test_a_value_is_refused() -> None:
    with pytest.raises(ValueError, match="never pass the secret"):
        load_secrets({"hf_token_secret": "hf_abcdefghijklmnop"}, client=object())
    assert version_name("projects/p/secrets/s") == "projects/p/secrets/s/versions/latest"


def test_local_register_writes_a_record(tmp_path: Path) -> None:
    out = tmp_path / "registered" / "record.json"
    rec = register_model(model_uri="/tmp/model", model_metadata={"base_model": "tiny"},
                         project="", location="", display_name="dolly-lora-gemma3-1b",
                         serving_image="img", pipeline_job="job-1", record_path=str(out))
    assert rec["registry"] == "local" and json.loads(out.read_text())["pipeline_job"] == "job-1"
