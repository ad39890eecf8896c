"""`.env` mistakes: one line each, naming the file, the line and what is wrong, printed once;
a near-miss key gets "did you mean"; python-dotenv's own warning is not shown."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from cli import app

SECRET = "s3cr3t-value"


@pytest.fixture
def dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app, "_DOTENV_READ", set())
    for key in ("WANDB_API_KEY", "DOLLY_LORA_PROJECT", "DOLLY_LORA_REGION", "GOOD_ONE"):
        monkeypatch.delenv(key, raising=False)
    path = tmp_path / ".env"
    path.write_text(
        '"DOLLY_LORA_PROJECT"=my-proj\n'     # 1: quoted key
        'DOLLY_LORA_REGON=us-central1\n'     # 2: near miss
        'WANDB_APIKEY=x\n'                   # 3: near miss
        'this is not a setting\n'            # 4
        'DOLLY_LORA_REGION=europe-west4\n'   # 5: fine
        f'WANDB_API_KEY = "{SECRET}\n'      # 6: unclosed quote, up to the next quote
        'GOOD_ONE=1\n'                       # 7: taken into line 6's value
        "OTHER='x\"y'\n"                     # 8: ... up to here
        'LAST=1\n'                           # 9: fine
    )
    yield path
    for key in ("LAST", "DOLLY_LORA_REGION", "DOLLY_LORA_REGON", "WANDB_APIKEY"):
        os.environ.pop(key, None)


def test_each_bad_line_is_named_once_with_its_number(dotenv: Path, capsys, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        app.load_dotenv()
        app.load_dotenv()  # the CLI loads it before parsing and again in the command
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines == [
        f"warning: {dotenv} line 1: the key \"DOLLY_LORA_PROJECT\" is quoted or not a name; "
        "write DOLLY_LORA_PROJECT=... (the line is ignored)",
        f"warning: {dotenv} line 2: DOLLY_LORA_REGON is not a setting this project reads; did "
        "you mean DOLLY_LORA_REGION?",
        f"warning: {dotenv} line 3: WANDB_APIKEY is not a setting this project reads; did you "
        "mean WANDB_API_KEY?",
        f"warning: {dotenv} line 4: not KEY=VALUE; the line is ignored",
        f"warning: {dotenv} line 6: the value of WANDB_API_KEY opens a \" quote that is never "
        "closed (lines 7-8 went into it); the line is ignored",
    ]
    assert SECRET not in err
    assert not [r for r in caplog.records if r.name.startswith("dotenv")]
    assert os.environ["DOLLY_LORA_REGION"] == "europe-west4" and os.environ["LAST"] == "1"
    assert "WANDB_API_KEY" not in os.environ and "DOLLY_LORA_PROJECT" not in os.environ
