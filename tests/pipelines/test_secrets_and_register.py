"""Secrets by resource name at runtime, and the registry step behind the gate: the local record,
and on Vertex the upload request the real aiplatform client sends (captured, never sent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.common.secrets import load_secrets, version_name
from components.register.register import lineage, register_model


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
    info = lineage({"base_model": "tiny"}, "", {}, {}, "job-1")
    rec = register_model(model_uri="/tmp/model", info=info, project="", location="",
                         display_name="dolly-lora-gemma3-1b", serving_image="img",
                         max_model_len=4096, record_path=str(out))
    assert rec["registry"] == "local" and json.loads(out.read_text())["pipeline_job"] == "job-1"


class RefusingSecretManager:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def access_secret_version(self, name: str) -> Any:
        raise self.error


@pytest.mark.parametrize(("error", "message"), [
    ("PermissionDenied", "permission denied; grant that account "
                         "roles/secretmanager.secretAccessor"),
    ("NotFound", "does not exist"),
])
def test_a_refused_secret_names_itself_and_the_identity(
    monkeypatch: pytest.MonkeyPatch, error: str, message: str
) -> None:
    from google.api_core import exceptions

    from components.common import secrets
    from components.common.errors import InputError

    monkeypatch.setattr(secrets, "principal", lambda: "runner@p.iam.gserviceaccount.com")
    client = RefusingSecretManager(getattr(exceptions, error)("nope"))
    with pytest.raises(InputError) as err:
        load_secrets({"hf_token_secret": "projects/p/secrets/hf"}, client)
    text = str(err.value)
    assert "projects/p/secrets/hf/versions/latest" in text
    assert "runner@p.iam.gserviceaccount.com" in text and message in text


def test_principal_is_the_credentials_account(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth

    from components.common import secrets

    creds = type("C", (), {"service_account_email": "sa@p.iam.gserviceaccount.com"})()
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (creds, "p"))
    assert secrets.principal() == "sa@p.iam.gserviceaccount.com"

    def no_credentials(*a: Any, **k: Any) -> Any:
        raise google.auth.exceptions.DefaultCredentialsError("none")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    assert "no application default credentials" in secrets.principal()


def test_regional_secrets_use_their_regional_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud import secretmanager

    from components.common.secrets import check_secret_name, secret_location

    name = "projects/p/locations/europe-west4/secrets/hf"
    assert check_secret_name(name) == name
    assert secret_location(name) == "europe-west4" and secret_location("projects/p/secrets/s") == ""
    made: list[Any] = []

    class Client(FakeSecretManager):
        def __init__(self, client_options: Any = None) -> None:
            super().__init__({f"{name}/versions/latest": "regional",
                              "projects/p/secrets/wb/versions/latest": "global"})
            made.append(client_options)

    monkeypatch.setattr(secretmanager, "SecretManagerServiceClient", Client)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    load_secrets({"hf_token_secret": name, "wandb_api_key_secret": "projects/p/secrets/wb"})
    import os

    assert os.environ["HF_TOKEN"] == "regional" and os.environ["WANDB_API_KEY"] == "global"
    assert made == [{"api_endpoint": "secretmanager.europe-west4.rep.googleapis.com"}, None]


def test_register_reads_the_base_model_from_the_model_folder(tmp_path: Path) -> None:
    """On Vertex a custom job's artifact metadata does not arrive: the export step's
    export.json, next to the merged weights, names the base."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "export.json").write_text(json.dumps({"base_model": "google/gemma-3-1b-it"}))
    info = lineage({}, str(model), {}, {}, "job-2")
    rec = register_model(model_uri="gs://b/model", info=info, project="", location="",
                         display_name="d", serving_image="img", max_model_len=4096,
                         record_path=str(tmp_path / "rec.json"))
    assert rec["base_model"] == "google/gemma-3-1b-it"


INFO = {"pipeline_job": "j", "split_hash": "abc", "eval_metric": "loss",
        "eval_improvement_low": 0.01, "eval_improvement_high": 0.02, "eval_rows": 40}


def test_the_registry_model_is_named_after_the_base_model_unless_given(tmp_path: Path) -> None:
    from components.register.register import display_name_for

    assert display_name_for("google/gemma-3-1b-it") == "dolly-lora-gemma-3-1b-it"
    assert display_name_for("embedded://tiny-gemma3") == "dolly-lora-tiny-gemma3"
    assert display_name_for("gs://b/models/My_Model/") == "dolly-lora-my_model"
    rec = register_model(model_uri="m", info={**INFO, "base_model": "meta-llama/Llama-3.2-1B"},
                         project="", location="", display_name="", serving_image="img",
                         max_model_len=4096, record_path=str(tmp_path / "r.json"))
    assert rec["display_name"] == "dolly-lora-llama-3-2-1b"
    given = register_model(model_uri="m", info={**INFO, "base_model": "x/y"}, project="",
                           location="", display_name="team-model", serving_image="img",
                           max_model_len=4096, record_path=str(tmp_path / "g.json"))
    assert given["display_name"] == "team-model"
