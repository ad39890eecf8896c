"""`submit --batch` and `submit batch ...`: the real google-cloud-batch and google-cloud-logging
clients over REST, their HTTP requests captured by a requests adapter (nothing leaves the
machine) and parsed back into batch_v1 / logging types."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from typer.testing import CliRunner

from cli.submit import app
from tests.cli.vertex_fakes import IMAGE, SECRET_VALUES

WHERE = ["--project", "my-proj", "--region", "us-central1", "--pipeline-root",
         "gs://my-bucket/runs"]
SECRETS = ["--hf-token-secret", "projects/my-proj/secrets/hf",
           "--wandb-key-secret", "projects/my-proj/secrets/wandb"]


class Recorder(requests.adapters.BaseAdapter):
    """A requests adapter that records each request and answers with `reply(request)`."""

    def __init__(self, reply: Any) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []
        self.reply = reply

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        r = requests.Response()
        r.status_code, r.request, r.url = 200, request, request.url
        r._content = json.dumps(self.reply(request)).encode()
        r.headers["Content-Type"] = "application/json"
        return r

    def close(self) -> None:
        pass


def batch_client(reply: Any) -> tuple[Any, Recorder]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import batch_v1

    c = batch_v1.BatchServiceClient(credentials=AnonymousCredentials(), transport="rest")
    rec = Recorder(reply)
    c._transport._session.mount("https://", rec)
    return c, rec


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", SECRET_VALUES[0])
    monkeypatch.setenv("WANDB_API_KEY", SECRET_VALUES[1])
    (tmp_path / ".env").write_text(f"HF_TOKEN={SECRET_VALUES[0]}\n")


def test_create_job_sends_one_spot_l4_task_retried_on_preemption_only(
        env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud import batch_v1

    from cli import batch_run

    client, rec = batch_client(lambda req: {"name": "x", "uid": "uid-123"})
    monkeypatch.setattr("cli.failures.require_credentials", lambda service: None)
    from cli.app import Options

    opts = Options(batch=True, project="my-proj", region="us-central1",
                   pipeline_root="gs://my-bucket/runs", image=IMAGE, run_id="trial-1",
                   labels=["team=ml"], hf_token_secret="projects/my-proj/secrets/hf",
                   wandb_key_secret="projects/my-proj/secrets/wandb",
                   service_account="runner@my-proj.iam.gserviceaccount.com",
                   network="projects/1/global/networks/vpc")
    batch_run.run_batch(opts, client=client)
    assert len(rec.sent) == 1
    sent = rec.sent[0]
    assert sent.method == "POST" and "jobId=trial-1" in sent.url
    assert "/v1/projects/my-proj/locations/us-central1/jobs" in sent.url
    body = sent.body.decode() if isinstance(sent.body, bytes) else sent.body
    for value in SECRET_VALUES:
        assert value not in body and value not in sent.url
    job = batch_v1.Job.from_json(body)
    (group,) = job.task_groups
    assert group.task_count == 1
    task = group.task_spec
    (inst,) = job.allocation_policy.instances
    assert inst.install_gpu_drivers
    assert inst.policy.machine_type == "g2-standard-8"
    assert [(a.type_, a.count) for a in inst.policy.accelerators] == [("nvidia-l4", 1)]
    assert inst.policy.provisioning_model == batch_v1.AllocationPolicy.ProvisioningModel.SPOT
    assert inst.policy.boot_disk.size_gb >= 100
    (policy,) = task.lifecycle_policies
    assert policy.action == batch_v1.LifecyclePolicy.Action.RETRY_TASK
    assert list(policy.action_condition.exit_codes) == [50001]
    assert 1 <= task.max_retry_count <= 3
    assert 1800 <= task.max_run_duration.total_seconds() <= 6 * 3600
    assert dict(task.environment.secret_variables) == {
        "HF_TOKEN": "projects/my-proj/secrets/hf/versions/latest",
        "WANDB_API_KEY": "projects/my-proj/secrets/wandb/versions/latest"}
    (vol,) = task.volumes
    assert vol.gcs.remote_path == "my-bucket" and vol.mount_path.startswith("/mnt/disks/")
    (runnable,) = task.runnables
    assert runnable.container.image_uri == IMAGE
    script = runnable.container.commands[-1]
    assert f"--output-dir {vol.mount_path}/runs" in script and "--run-id trial-1" in script
    assert "--resume trial-1" in script  # the retried attempt resumes the same run
    assert job.labels["team"] == "ml" and job.allocation_policy.labels["team"] == "ml"
    assert job.allocation_policy.service_account.email.startswith("runner@")
    assert job.allocation_policy.network.network_interfaces[0].network.endswith("/vpc")


def test_dry_run_prints_a_batch_job_and_both_estimates(env: None) -> None:
    from google.cloud import batch_v1

    res = CliRunner().invoke(app, ["--batch", "--project", "P", "--region", "us-central1",
                                   "--pipeline-root", "gs://B/p", "--hf-token-secret",
                                   "projects/P/secrets/hf", "--image", IMAGE, "--dry-run"])
    assert res.exit_code == 0, res.output
    job = batch_v1.Job.from_json(res.stdout)
    task = job.task_groups[0].task_spec
    assert dict(task.environment.secret_variables) == {
        "HF_TOKEN": "projects/P/secrets/hf/versions/latest"}
    assert "Cloud Batch (one VM, one start-up)" in res.stderr
    assert "Vertex AI Pipelines, same run" in res.stderr and "3 start-ups" in res.stderr
    for value in SECRET_VALUES:
        assert value not in res.stdout


def test_a_sweep_on_batch_runs_its_trials_on_the_vm_and_prices_them_all(env: None) -> None:
    """The task gets the grid; the max run duration and estimate grow with the trials."""
    from google.cloud import batch_v1

    def dry(*extra: str) -> tuple[batch_v1.Job, str]:
        res = CliRunner().invoke(app, ["--batch", *WHERE, *SECRETS, "--image", IMAGE,
                                       *extra, "--dry-run"])
        assert res.exit_code == 0, res.output
        return batch_v1.Job.from_json(res.stdout), res.stderr

    single, _ = dry()
    sweep, err = dry("--sweep", "lora_r=8,16,32")
    command = sweep.task_groups[0].task_spec.runnables[0].container.commands[-1]
    assert "--sweep lora_r=8,16,32" in command
    assert "3 trials" in err and "one after another" in err and "5 start-ups" in err
    assert (sweep.task_groups[0].task_spec.max_run_duration
            > single.task_groups[0].task_spec.max_run_duration)


@pytest.mark.parametrize(("args", "says"), [
    (["--project", "p", "--region", "us-central1"], "--pipeline-root gs://"),
    (["--project", "p", "--region", "us-central1", "--pipeline-root", "/tmp/x"],
     "--pipeline-root gs://"),
    ([*WHERE, *SECRETS], "placeholder"),
    ([*WHERE, *SECRETS, "--image", IMAGE.split("@")[0] + ":v1"], "not pinned"),
    (["--project", "p", "--region", "europe-north1", "--pipeline-root", "gs://b/p", *SECRETS,
      "--image", IMAGE], "has no NVIDIA L4"),
    ([*WHERE, "--image", IMAGE], "no HF token secret"),
    ([*WHERE, *SECRETS, "--image", IMAGE, "--max-cost", "0.01"], "above --max-cost"),
])
def test_bad_batch_input_is_one_line_exit_2(env: None, args: list[str], says: str) -> None:
    res = CliRunner().invoke(app, ["--batch", *args])
    assert res.exit_code == 2, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and says in last, res.stderr
    assert not res.stdout.strip()


def _job(state: str, retries: int = 0) -> dict[str, Any]:
    t0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    events = [{"type": "STATUS_CHANGED", "description": "Job state is set from SCHEDULED to RUNNING",
               "eventTime": t0.isoformat()}]
    events += [{"description": f"Task trial-1-group0-0 failed with exit code 50001, "
                               f"retry {i + 1}", "eventTime": t0.isoformat()}
               for i in range(retries)]
    return {"name": "projects/p/locations/us-central1/jobs/trial-1", "uid": "uid-123",
            "createTime": t0.isoformat(), "updateTime": (t0 + timedelta(hours=1)).isoformat(),
            "status": {"state": state, "statusEvents": events, "runDuration": "3600s"},
            "allocationPolicy": {"instances": [{"policy": {
                "machineType": "g2-standard-8", "provisioningModel": "SPOT"}}]}}


def test_status_shows_state_attempts_elapsed_and_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import batch
    from planning.prices import price

    client, rec = batch_client(lambda req: _job("RUNNING", retries=1))
    monkeypatch.setattr(batch, "client", lambda: client)
    res = CliRunner().invoke(app, ["--project", "p", "--region", "us-central1", "batch",
                                   "status", "trial-1"])
    assert res.exit_code == 0, res.output
    assert urlparse(rec.sent[0].url).path == "/v1/projects/p/locations/us-central1/jobs/trial-1"
    assert "trial-1: RUNNING" in res.stdout and "attempts: 2" in res.stdout
    assert "elapsed: 60.0 min" in res.stdout
    assert f"${price('g2-standard-8', 'SPOT').usd_per_hour:.2f}" in res.stdout
    assert "batch-job-uid=uid-123" in res.stdout


def test_cancel_deletes_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import batch

    client, rec = batch_client(lambda req: {"name": "operations/1", "done": True})
    monkeypatch.setattr(batch, "client", lambda: client)
    res = CliRunner().invoke(app, ["--project", "p", "--region", "us-central1", "batch",
                                   "cancel", "trial-1"])
    assert res.exit_code == 0, res.output
    assert rec.sent[0].method == "DELETE" and urlparse(rec.sent[0].url).path.endswith("/jobs/trial-1")


def test_logs_follow_polls_with_a_timestamp_cursor(capsys: pytest.CaptureFixture[str]) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import logging as gcl

    from cli.batch import follow_logs

    pages = [[("2026-12-07T12:00:01Z", "fine-tune step 1/10")],
             [("2026-12-07T12:00:11Z", "fine-tune step 5/10")], []]

    def reply(req: requests.PreparedRequest) -> dict[str, Any]:
        page = pages[min(len(rec.sent) - 1, len(pages) - 1)]
        return {"entries": [{"logName": "projects/p/logs/batch_task_logs", "timestamp": t,
                             "textPayload": text, "resource": {"type": "generic_task"}}
                            for t, text in page]}

    rec = Recorder(reply)
    session = requests.Session()
    session.mount("https://", rec)
    client = gcl.Client(project="p", credentials=AnonymousCredentials(), _http=session,
                        _use_grpc=False)
    ends = iter([False, True])
    slept: list[float] = []
    follow_logs(client, "uid-123", True, done=lambda: next(ends),
                since="2026-12-07T12:00:00+00:00", sleep=slept.append)
    out = capsys.readouterr().out
    assert out.splitlines() == ["fine-tune step 1/10", "fine-tune step 5/10"]
    filters = [json.loads(r.body)["filter"] for r in rec.sent]
    assert len(filters) == 3 and slept == [10.0]  # no sleep once the job has ended
    assert all('labels.job_uid="uid-123"' in f and "batch_task_logs" in f for f in filters)
    assert 'timestamp>"2026-12-07T12:00:00' in filters[0]
    assert 'timestamp>"2026-12-07T12:00:01' in filters[1]
    assert 'timestamp>"2026-12-07T12:00:11' in filters[2]
