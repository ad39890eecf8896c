"""`submit --local` guards: one run per run folder, W&B probed once, summary.json honest."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from cli.local_run import RunFolder, build_summary, written_artifacts
from components.common import tracking
from components.common.errors import InputError


def test_two_runs_with_one_run_id_cannot_both_claim_the_folder(tmp_path: Path) -> None:
    """Started together, exactly one claims runs/<id> (os.mkdir is atomic); the other is told
    at once, before any data check."""
    root = tmp_path / "runs" / "same"
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    folders: list[RunFolder] = []  # held to the end, as a running submit holds its claim

    def start() -> None:
        folder = RunFolder(root, resume=False)
        folders.append(folder)
        barrier.wait()
        try:
            folder.claim()
            outcomes.append("claimed")
        except InputError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("claimed") == 1
    # The folder made but not yet locked by the winner, or locked: told either way, at once.
    assert all("already exists" in o or "another submit --local is running" in o
               for o in outcomes if o != "claimed")


def test_resuming_runs_are_kept_apart_by_the_lock_and_it_dies_with_the_run(tmp_path: Path) -> None:
    root = tmp_path / "runs" / "resume"
    first = RunFolder(root, resume=True)
    first.claim()
    with pytest.raises(InputError, match="another submit --local is running"):
        RunFolder(root, resume=True).claim()
    first.release()  # the run ended (the kernel also drops the lock if it dies)
    again = RunFolder(root, resume=True)
    again.claim()
    again.release()


def test_a_failed_check_leaves_nothing_behind(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "a" / "b" / "runs" / "x", resume=False)
    folder.claim()
    assert (tmp_path / "a" / "b" / "runs" / "x").is_dir()
    folder.abandon()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def closed_port() -> str:
    """A local port nothing listens on: connecting is refused at once, no network used."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_wandb_unreachable_goes_offline_once(monkeypatch: pytest.MonkeyPatch,
                                             closed_port: str) -> None:
    """A W&B key and no way to the server: said once, offline for the rest of the run (the
    steps inherit WANDB_MODE), instead of every step waiting out wandb's 60 s timeout."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", closed_port)
    note = tracking.go_offline_if_unreachable(timeout=2.0)
    assert note and note.startswith(f"W&B: {closed_port} did not answer within 2 s")
    assert "offline for the rest of this run" in note
    import os

    assert os.environ["WANDB_MODE"] == "offline" and tracking.wandb_mode() == "offline"
    assert tracking.go_offline_if_unreachable(timeout=2.0) is None  # once


def test_wandb_answering_stays_online(monkeypatch: pytest.MonkeyPatch) -> None:
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_port}")
    try:
        assert tracking.go_offline_if_unreachable(timeout=5.0) is None
        assert tracking.wandb_mode() == "online"
    finally:
        thread.join(10)
        server.server_close()


def test_summary_lists_only_written_paths_and_counts_as_integers(tmp_path: Path) -> None:
    run = tmp_path / "pipeline" / "dolly-lora-1"
    gate = run / "gate"
    gate.mkdir(parents=True)
    (gate / "executor_output.json").write_text(json.dumps({"artifacts": {"metrics": {
        "artifacts": [{"metadata": {"base_loss": 3.0}}]}}}))
    ft = run / "fine-tune"
    (ft / "model").mkdir(parents=True)
    (ft / "executor_output.json").write_text(json.dumps({"artifacts": {"model": {
        "artifacts": [{"metadata": {"global_step": 60.0, "kept_step": 40.0}}]}}}))
    summary = build_summary("r", run, {}, {}, 1.0, "SUCCESS")
    assert "gate.metrics" not in summary["artifacts"]  # Metrics live in executor_output.json
    assert summary["artifacts"]["fine-tune.model"] == str(ft / "model")
    assert summary["training"]["global_step"] == 60 and isinstance(
        summary["training"]["global_step"], int)
    assert summary["training"]["kept_step"] == 40
    assert written_artifacts({"t": {"x": {"path": str(tmp_path / "nope")}}}) == {}
