"""The region's Vertex AI custom-training L4 quota, read with the Cloud Quotas API before submit:
a run whose GPU jobs need more L4s at once than the project may use would sit queued or fail
after the steps before it were paid for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from components.common.errors import InputError

SERVICE = "aiplatform.googleapis.com"


def l4s_at_once(machines: Mapping[str, Any]) -> int:
    """L4s the run holds at its peak: fine-tune alone, then evaluate and inference in parallel."""
    l4 = {k: m.accelerator_count for k, m in machines.items() if m.accelerator_type == "NVIDIA_L4"}
    return max(l4.get("fine-tune", 0), l4.get("evaluate", 0) + l4.get("inference", 0))


def l4_limit(infos: Any, region: str, spot: bool) -> tuple[int | None, str]:
    """(the region's custom-training L4 limit, its quota id) from QuotaInfo messages: the
    region's own value, else the quota's default; (None, '') when no such quota is listed.
    -1 means unlimited."""
    for info in infos:
        metric = info.metric.lower()
        if "custom_model_training" not in metric or "l4" not in metric \
                or ("preemptible" in metric) != spot:
            continue
        default = None
        for d in info.dimensions_infos:
            dims = dict(d.dimensions)
            if dims.get("region") == region:
                return int(d.details.value), info.quota_id
            if not dims:
                default = int(d.details.value)
        return default, info.quota_id
    return None, ""


def check_l4_quota(project: str, region: str, needed: int, spot: bool,
                   client: Callable[[], Any] | None = None) -> str:
    """One line for the user: the quota and that it suffices, or that it was not checked (no
    usable credentials, the API unreachable or not enabled). InputError (exit 2) when it is
    below `needed`, naming what to request."""
    if needed == 0:
        return ""
    try:
        quotas = (client or default_client)()
        if quotas is None:
            return "L4 quota: not checked (no Google credentials that can read quotas)"
        infos = quotas.list_quota_infos(
            parent=f"projects/{project}/locations/global/services/{SERVICE}", retry=None,
            timeout=10.0)
        limit, quota_id = l4_limit(infos, region, spot)
    except Exception as exc:  # noqa: BLE001 - any API or network failure: say so, go on
        return f"L4 quota: not checked ({type(exc).__name__}: {str(exc)[:120]})"
    kind = "Spot " if spot else ""
    if limit is None:
        return f"L4 quota: not checked (no {kind}custom-training L4 quota listed for {SERVICE})"
    if limit != -1 and limit < needed:
        raise InputError(
            f"the {kind}custom-training NVIDIA L4 quota of {project} in {region} is {limit}, "
            f"this run holds {needed} at once; request {needed}: gcloud beta quotas preferences "
            f"create --service={SERVICE} --quota-id={quota_id} --preferred-value={needed} "
            f"--dimensions=region={region} --project={project} (or the console's Quotas page)")
    return f"L4 quota: {limit if limit != -1 else 'unlimited'} {kind}L4s in {region} " \
           f"({quota_id}), this run holds {needed} at once"


def default_client() -> Any:
    """The Cloud Quotas client on Application Default Credentials; None without usable ones."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except google.auth.exceptions.DefaultCredentialsError:
        return None
    if isinstance(credentials, AnonymousCredentials):
        return None
    from google.cloud import cloudquotas_v1

    return cloudquotas_v1.CloudQuotasClient(credentials=credentials)
