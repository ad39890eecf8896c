"""Secrets on Vertex: read from Secret Manager at runtime, by resource name.

Why: a pipeline parameter is stored in the job, the console and every schedule, so a key must
never be one. The parameter holds only the secret's resource name
(`projects/P/secrets/NAME[/versions/V]`); the step reads the value when it starts and puts it in
its own environment, where `components.common.tracking` (W&B) and Hugging Face look for it.
Empty names do nothing, so a local run keeps using the environment or `.env`.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

log = logging.getLogger(__name__)

SECRET_NAME = re.compile(r"^projects/[^/\s]+/secrets/[A-Za-z0-9_-]+(/versions/[A-Za-z0-9_-]+)?$")

# pipeline parameter -> environment variable the libraries read
SECRET_ENV: dict[str, str] = {
    "hf_token_secret": "HF_TOKEN",
    "wandb_api_key_secret": "WANDB_API_KEY",
}


def check_secret_name(value: str) -> str:
    """'' or a Secret Manager resource name; anything else is refused (it may be the secret)."""
    if value and not SECRET_NAME.match(value):
        raise ValueError(
            "expected a Secret Manager resource name like "
            "projects/PROJECT/secrets/NAME[/versions/latest], not a value (never pass the "
            "secret itself as a parameter)"
        )
    return value


def version_name(name: str) -> str:
    """`projects/p/secrets/s` -> `projects/p/secrets/s/versions/latest`."""
    return name if "/versions/" in name else f"{name}/versions/latest"


def load_secrets(refs: dict[str, str], client: Any = None) -> list[str]:
    """Put each named secret into its environment variable; returns the variables set."""
    wanted = {param: check_secret_name(ref) for param, ref in refs.items() if ref}
    if not wanted:
        return []
    if client is None:
        from google.cloud import secretmanager

        client = secretmanager.SecretManagerServiceClient()
    done = []
    for param, ref in wanted.items():
        env = SECRET_ENV[param]
        resp = client.access_secret_version(name=version_name(ref))
        os.environ[env] = resp.payload.data.decode("utf-8").strip()
        done.append(env)
        log.info("%s read from Secret Manager (%s)", env, version_name(ref))
    return done
