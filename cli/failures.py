"""One place that turns "no credentials" and "cannot reach the service" into one clear line.

Why: every command that talks to Google Cloud or a Kubeflow Pipelines host fails the same few
ways (no Application Default Credentials, expired ones, no network, the endpoint down), and each
client library raises its own exception for them, usually as a page of traceback. `problem`
recognises them all and says what is missing and how to provide it; `submit` prints that line
and exits 2. Only light modules are imported here (google.auth, google.api_core), lazily.
"""

from __future__ import annotations

import re
from typing import Any

GCLOUD_LOGIN = ("run `gcloud auth application-default login`, or set "
                "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file")


def _first_line(exc: BaseException) -> str:
    """The gist of an error: an OS error's "[Errno 111] Connection refused" when one is buried in
    a client's wrapping (urllib3 nests it three deep), else the first line."""
    text = str(exc).strip()
    if m := re.search(r"\[Errno -?\d+\] [^\"'()]+", text):
        return m.group(0).strip()
    lines = text.splitlines()
    return (lines[0] if lines else exc.__class__.__name__)[:240]


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (a client often wraps the network error it met)."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def problem(exc: BaseException, service: str) -> str | None:
    """One line naming what is missing or unreachable and how to fix it, or None when `exc` is
    not a credentials or connectivity failure (then it is a bug and should show in full)."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    for e in _chain(exc):
        if isinstance(e, auth.DefaultCredentialsError):
            return f"no Google credentials for {service} ({_first_line(e)}); {GCLOUD_LOGIN}"
        if isinstance(e, auth.RefreshError):
            return (f"the Google credentials were refused when refreshed for {service} "
                    f"({_first_line(e)}); they may be expired or revoked: {GCLOUD_LOGIN}")
        if isinstance(e, api.Unauthenticated):
            return f"{service} refused the credentials ({_first_line(e)}); {GCLOUD_LOGIN}"
        if isinstance(e, api.PermissionDenied | api.Forbidden):
            return (f"{service}: permission denied ({_first_line(e)}); grant the account you "
                    "run as the role it names (docs/vertex.md lists the roles)")
        if isinstance(e, auth.TransportError | api.ServiceUnavailable | api.RetryError
                      | api.DeadlineExceeded) or _is_connection_error(e):
            return (f"cannot reach {service} ({_first_line(e)}); check the network connection "
                    "(and HTTPS_PROXY if you use a proxy), then retry")
    status = getattr(exc, "status", None)
    if exc.__class__.__name__ == "ApiException" and isinstance(status, int):  # kfp_server_api
        if status in (401, 403):
            return (f"{service} refused the request ({status} {getattr(exc, 'reason', '')}); "
                    "give credentials it accepts (kfp.Client: existing_token, or log in to its "
                    "identity proxy)")
        return f"{service} answered {status} {getattr(exc, 'reason', '')}".rstrip()
    return None


def _is_connection_error(e: BaseException) -> bool:
    """requests / urllib3 / socket errors that mean "nothing answered"."""
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & {"ConnectionError", "MaxRetryError", "NewConnectionError",
                         "ConnectTimeoutError", "TimeoutError", "URLError", "gaierror",
                         "ConnectionRefusedError", "SSLError"})


def require_credentials(service: str) -> Any:
    """Application Default Credentials, checked before a slow client import: with none, the
    command stops in a second, naming how to provide them."""
    import google.auth
    from google.auth import exceptions as auth

    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
    except auth.DefaultCredentialsError as exc:
        from components.common.errors import InputError

        raise InputError(problem(exc, service) or str(exc)) from None
    return credentials


def unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why nothing at `url` answers within `timeout` seconds (through the environment's proxy
    settings, as the clients do), or None when something does (any HTTP status counts)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - https endpoints only
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"


def require_reachable(url: str, service: str, timeout: float = 5.0) -> None:
    """One line, before anything is compiled or sent, when `service` cannot be reached."""
    why = unreachable(url, timeout)
    if why is not None:
        from components.common.errors import InputError

        raise InputError(f"cannot reach {service} ({why}); check the network connection (and "
                         "HTTPS_PROXY if you use a proxy), then retry")
