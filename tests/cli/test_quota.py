"""The L4 quota check: the real Cloud Quotas client (REST) against a local fake that answers
with the API's own ListQuotaInfosResponse message; the request it sent is parsed back."""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import cloudquotas_v1 as q

from cli.quota import SERVICE, check_l4_quota, l4s_at_once
from components.common.errors import InputError
from planning.machines import G2_MACHINES

QUOTA = "CustomModelTrainingNvidiaL4GpusPerProjectPerRegion"  # as this fake names it


def quota_infos(region_value: int) -> str:
    """What the service answers: an on-demand and a Spot L4 quota, with a default and one
    region's own value, and an unrelated quota."""
    def info(metric: str, quota_id: str, value: int) -> q.QuotaInfo:
        return q.QuotaInfo(metric=metric, quota_id=quota_id, service=SERVICE, dimensions_infos=[
            q.DimensionsInfo(dimensions={}, details=q.QuotaDetails(value=8)),
            q.DimensionsInfo(dimensions={"region": "us-central1"},
                             details=q.QuotaDetails(value=value))])
    response = q.ListQuotaInfosResponse(quota_infos=[
        info(f"{SERVICE}/custom_model_training_cpus", "CustomModelTrainingCPUs", 100),
        info(f"{SERVICE}/custom_model_training_preemptible_nvidia_l4_gpus", "Spot" + QUOTA, 0),
        info(f"{SERVICE}/custom_model_training_nvidia_l4_gpus", QUOTA, region_value),
    ])
    return q.ListQuotaInfosResponse.to_json(response)


@pytest.fixture
def fake() -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"requests": [], "value": 4}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urllib.parse.urlparse(self.path)
            parent = url.path.removeprefix("/v1/").removesuffix("/quotaInfos")
            query = dict(urllib.parse.parse_qsl(url.query))
            state["requests"].append(q.ListQuotaInfosRequest(
                parent=parent, page_size=int(query.get("pageSize", 0))))
            body = quota_infos(state["value"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    state["client"] = lambda: q.CloudQuotasClient(
        credentials=AnonymousCredentials(), transport="rest",
        client_options={"api_endpoint": f"http://127.0.0.1:{port}"})
    yield state
    server.shutdown()


def test_enough_quota_says_so_and_the_request_names_the_project_and_service(fake):
    line = check_l4_quota("my-proj", "us-central1", 2, spot=False, client=fake["client"])
    assert line == f"L4 quota: 4 L4s in us-central1 ({QUOTA}), this run holds 2 at once"
    [req] = fake["requests"]
    assert req.parent == f"projects/my-proj/locations/global/services/{SERVICE}"


def test_too_little_quota_is_refused_naming_what_to_request(fake):
    fake["value"] = 1
    with pytest.raises(InputError) as exc:
        check_l4_quota("my-proj", "us-central1", 4, spot=False, client=fake["client"])
    msg = str(exc.value)
    assert "\n" not in msg and "quota of my-proj in us-central1 is 1, this run holds 4" in msg
    assert f"--quota-id={QUOTA} --preferred-value=4 --dimensions=region=us-central1" in msg
    # Spot has its own quota (0 here); another region gets the default (8)
    with pytest.raises(InputError, match="Spot custom-training NVIDIA L4 quota"):
        check_l4_quota("my-proj", "us-central1", 1, spot=True, client=fake["client"])
    assert "8 L4s in europe-west4" in check_l4_quota("my-proj", "europe-west4", 4, spot=False,
                                                     client=fake["client"])


def test_offline_or_without_credentials_it_says_not_checked():
    assert check_l4_quota("p", "us-central1", 1, False, client=lambda: None).startswith(
        "L4 quota: not checked (no Google credentials")
    closed = lambda: q.CloudQuotasClient(  # noqa: E731 - nothing listens there
        credentials=AnonymousCredentials(), transport="rest",
        client_options={"api_endpoint": "http://127.0.0.1:9"})
    assert check_l4_quota("p", "us-central1", 1, False, client=closed).startswith(
        "L4 quota: not checked (")


def test_the_run_holds_fine_tune_alone_then_evaluate_and_inference_together():
    one, four = G2_MACHINES["g2-standard-8"], G2_MACHINES["g2-standard-48"]
    assert l4s_at_once({"fine-tune": one, "evaluate": one, "inference": one}) == 2
    assert l4s_at_once({"fine-tune": four, "evaluate": one, "inference": one}) == 4
    assert l4s_at_once({"fine-tune": four, "evaluate": four, "inference": four}) == 8
