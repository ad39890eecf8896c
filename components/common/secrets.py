"""Secrets on Vertex: read from Secret Manager at runtime, by resource name.

Why: a pipeline parameter is stored in the job, the console and every schedule, so a key must
never be one. The parameter holds only the secret's resource name
(`projects/P/secrets/NAME[/versions/V]`, or a regional secret
`projects/P/locations/L/secrets/NAME[...]`, served by the regional endpoint); the step reads the
value when it starts and puts it in its own environment, where `components.common.tracking`
(W&B, MLflow) and Hugging Face look for it. Empty names do nothing, so a local run keeps using the
environment or `.env`. A refused read names the secret and the identity that was refused.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from components.common.errors import InputError

log = logging.getLogger(__name__)

SECRET_NAME = re.compile(
    r"^projects/[^/\s]+/(locations/(?P<location>[a-z0-9-]+)/)?secrets/[A-Za-z0-9_-]+"
    r"(/versions/[A-Za-z0-9_-]+)?$"
)
METADATA_EMAIL = ("http://metadata.google.internal/computeMetadata/v1/instance/"
                  "service-accounts/default/email")

# pipeline parameter -> environment variable the libraries read
SECRET_ENV: dict[str, str] = {
    "hf_token_secret": "HF_TOKEN",
    "wandb_api_key_secret": "WANDB_API_KEY",
    "mlflow_token_secret": "MLFLOW_TRACKING_TOKEN",
}


def check_secret_name(value: str) -> str:
    """'' or a Secret Manager resource name; anything else is refused (it may be the secret)."""
    if value and not SECRET_NAME.match(value):
        raise ValueError(
            "expected a Secret Manager resource name like "
            "projects/PROJECT/secrets/NAME[/versions/latest] (regional: "
            "projects/PROJECT/locations/REGION/secrets/NAME), not a value (never pass the "
            "secret itself as a parameter)"
        )
    return value


def secret_location(name: str) -> str:
    """The region of a regional secret ('' for a global one)."""
    m = SECRET_NAME.match(name)
    return (m.group("location") or "") if m else ""


def secret_client(location: str = "") -> Any:
    """A Secret Manager client; a regional secret is only served by its region's endpoint."""
    from google.cloud import secretmanager

    if not location:
        return secretmanager.SecretManagerServiceClient()
    return secretmanager.SecretManagerServiceClient(
        client_options={"api_endpoint": f"secretmanager.{location}.rep.googleapis.com"}
    )


def principal() -> str:
    """The identity this process calls Google APIs as (for error messages only)."""
    try:
        import google.auth

        creds, _ = google.auth.default()
    except Exception:  # noqa: BLE001 - no credentials is itself the answer
        return "no identity (no application default credentials)"
    email = getattr(creds, "service_account_email", None)
    if email and email != "default":
        return str(email)
    try:  # on Vertex / Compute Engine the metadata server knows the attached account
        import requests

        resp = requests.get(METADATA_EMAIL, headers={"Metadata-Flavor": "Google"}, timeout=2)
        if resp.ok and "@" in resp.text:
            return resp.text.strip()
    except Exception:  # noqa: BLE001
        pass
    return str(getattr(creds, "signer_email", "") or "this step's credentials (account unknown)")


def read_secret(client: Any, name: str) -> str:
    """One secret version's value; a refused or missing secret is one line naming it, the
    identity that asked and the fix."""
    from google.api_core import exceptions

    try:
        resp = client.access_secret_version(name=name)
    except exceptions.PermissionDenied:
        raise InputError(
            f"cannot read secret {name} as {principal()}: permission denied; grant that account "
            "roles/secretmanager.secretAccessor on the secret (gcloud secrets "
            "add-iam-policy-binding NAME --member=serviceAccount:ACCOUNT "
            "--role=roles/secretmanager.secretAccessor)"
        ) from None
    except exceptions.NotFound:
        raise InputError(
            f"secret {name} does not exist (asked as {principal()}); create it (gcloud secrets "
            "create) or fix the name; a regional secret is named "
            "projects/P/locations/REGION/secrets/NAME"
        ) from None
    return resp.payload.data.decode("utf-8").strip()


def version_name(name: str) -> str:
    """`projects/p/secrets/s` -> `projects/p/secrets/s/versions/latest`."""
    return name if "/versions/" in name else f"{name}/versions/latest"


def load_secrets(refs: dict[str, str], client: Any = None) -> list[str]:
    """Put each named secret into its environment variable; returns the variables set."""
    wanted = {param: check_secret_name(ref) for param, ref in refs.items() if ref}
    if not wanted:
        return []
    clients: dict[str, Any] = {}
    done = []
    for param, ref in wanted.items():
        env = SECRET_ENV[param]
        location = secret_location(ref)
        if client is None and location not in clients:
            clients[location] = secret_client(location)
        os.environ[env] = read_secret(client or clients[location], version_name(ref))
        done.append(env)
        log.info("%s read from Secret Manager (%s)", env, version_name(ref))
    return done
