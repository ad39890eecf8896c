"""Open-source Kubeflow Pipelines: the host checked, a client that answers, the run sent.

`submit --kfp-host URL` sends the template compiled with `--target kfp` (GPU steps as plain
tasks asking Kubernetes for `nvidia.com/gpu`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.templates import load_template
from components.common.errors import InputError


def check_kfp_host(host: str) -> str:
    """An http(s) URL with a host, or one line saying what a KFP endpoint looks like."""
    from urllib.parse import urlparse

    url = urlparse(host)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InputError(
            f"--kfp-host {host!r} is not a URL; give the Kubeflow Pipelines endpoint as "
            "http(s)://HOST[:PORT], e.g. http://localhost:8080 after `kubectl port-forward "
            "-n kubeflow svc/ml-pipeline-ui 8080:80`"
        )
    return host


def kfp_client(host: str, client_factory: Callable[..., Any] | None = None) -> Any:
    """A kfp.Client for `host`; creating it asks the endpoint's health, so a host that does not
    answer fails here (as one line, `cli.failures`), before anything is compiled or sent."""
    import logging
    import warnings

    if client_factory is None:
        import kfp

        client_factory = kfp.Client
    retries = logging.getLogger("urllib3.connectionpool")
    level = retries.level
    retries.setLevel(logging.ERROR)  # its "Retrying ..." lines: the one error line says it all
    try:
        with warnings.catch_warnings():  # "This client only works with ... v2.0.0-beta.2 ..."
            warnings.simplefilter("ignore", FutureWarning)
            return client_factory(host=host)
    finally:
        retries.setLevel(level)


def submit_kfp(
    host: str, template: Path, parameter_values: dict[str, Any], run_name: str,
    experiment: str, enable_caching: bool | None, service_account: str,
    client_factory: Callable[..., Any] | None = None,
) -> str:
    """Submit the same YAML to an open-source Kubeflow Pipelines endpoint; returns the run id."""
    load_template(str(template))
    if client_factory is None:
        import kfp

        client_factory = kfp.Client
    client = client_factory(host=host)
    run = client.create_run_from_pipeline_package(
        pipeline_file=str(template),
        arguments=parameter_values,
        run_name=run_name,
        experiment_name=experiment or None,
        enable_caching=enable_caching,
        service_account=service_account or None,
    )
    return run.run_id
