"""The checkpoint store against a real GCS emulator: completeness, skipping, pruning, errors,
retries across an outage. No training here except the outage-during-training test."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from google.api_core import exceptions

from components.common import storage
from components.common.config import DataConfig, TrainConfig
from components.common.errors import InputError
from components.fine_tune import checkpointing
from components.fine_tune.checkpointing import MARKER, CheckpointStore
from tests.gcs_emulator import GcsEmulator, wait_until

pytestmark = pytest.mark.integration

PREFIX = "gs://ckpt/root/run-1/fine-tune"


def fake_checkpoint(root: Path, step: int) -> Path:
    d = root / f"checkpoint-{step}"
    (d / "sub").mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(bytes([step % 256]) * 1000)
    (d / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    (d / "sub" / "x.bin").write_bytes(b"x" * step)
    return d


def save(store: CheckpointStore, tmp: Path, step: int, fp: str = "fp") -> None:
    store.upload_checkpoint(fake_checkpoint(tmp / "local", step), step, fp)


def test_resume_picks_newest_complete_and_skips_an_interrupted_upload(gcs, tmp_path, caplog):
    store = CheckpointStore(PREFIX)
    save(store, tmp_path, 2)
    save(store, tmp_path, 4)
    # A kill during step 6's upload: files there, marker never written.
    storage.upload_folder(fake_checkpoint(tmp_path / "local", 6), store.checkpoints_uri + "/step-000006")
    assert [(c.step, c.complete) for c in store.scan()] == [(2, True), (4, True), (6, False)]

    with caplog.at_level(logging.WARNING):
        step, path = store.prepare_resume(tmp_path / "work", "fp")
    assert step == 4 and path == tmp_path / "work" / "checkpoint-4"
    assert (path / "sub" / "x.bin").read_bytes() == b"x" * 4
    assert not (path / MARKER).exists()
    assert "skipping checkpoint gs://ckpt/root/run-1/fine-tune/checkpoints/step-000006" in caplog.text
    assert [c.step for c in store.scan()] == [2, 4], "the incomplete folder is cleared"


def test_a_corrupt_newest_checkpoint_is_skipped(gcs, tmp_path, caplog):
    store = CheckpointStore(PREFIX)
    save(store, tmp_path, 2)
    save(store, tmp_path, 4)
    storage.upload_bytes(b"truncated", store.checkpoints_uri + "/step-000004/adapter_model.safetensors")
    with caplog.at_level(logging.WARNING):
        step, _ = store.prepare_resume(tmp_path / "work", "fp")
    assert step == 2
    assert "adapter_model.safetensors differs from the manifest" in caplog.text


def test_no_checkpoint_means_fresh_start(gcs, tmp_path):
    assert CheckpointStore(PREFIX).prepare_resume(tmp_path, "fp") is None


def test_marker_is_created_once_with_a_generation_precondition(gcs, tmp_path):
    store = CheckpointStore(PREFIX)
    save(store, tmp_path, 2)
    marker_uri = store.checkpoints_uri + "/step-000002/" + MARKER
    with pytest.raises(exceptions.PreconditionFailed):  # the emulator enforces it
        storage.upload_bytes(b"{}", marker_uri, if_generation_match=0)
    save(store, tmp_path / "again", 2)  # a retried save of the same step is not an error
    assert store.problem(store.scan()[0], "fp") is None


def test_keeps_the_last_k_complete_checkpoints(gcs, tmp_path):
    store = CheckpointStore(PREFIX)
    for step in (2, 4, 6, 8):
        save(store, tmp_path / str(step), step)
        store.prune(2)
    assert [(c.step, c.complete) for c in store.scan()] == [(6, True), (8, True)]


def test_other_training_data_is_never_resumed_silently(gcs, tmp_path):
    store = CheckpointStore(PREFIX)
    save(store, tmp_path, 2, fp="aaaa")
    with pytest.raises(InputError, match="other training data, settings"):
        store.prepare_resume(tmp_path / "work", "bbbb")


def test_fingerprint_ignores_checkpoint_settings_only():
    rows = [{"messages": [{"role": "user", "content": "hi"}]}]
    a = TrainConfig(checkpoint_uri="gs://a/b", save_steps=5)
    assert checkpointing.fingerprint(a, rows) == checkpointing.fingerprint(TrainConfig(), rows)
    assert checkpointing.fingerprint(TrainConfig(max_steps=9), rows) != checkpointing.fingerprint(
        TrainConfig(), rows)
    assert checkpointing.fingerprint(TrainConfig(), rows * 2) != checkpointing.fingerprint(
        TrainConfig(), rows)


def test_missing_bucket_stops_before_the_model_loads(gcs, tmp_path, monkeypatch):
    from components.fine_tune import train as train_mod

    monkeypatch.setattr(train_mod, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    cfg = TrainConfig(base_model="embedded://tiny-gemma3", checkpoint_uri="gs://no-such-bucket/x")
    with pytest.raises(InputError, match=r"bucket gs://no-such-bucket does not exist; create it"):
        train_mod.train(cfg, [{"messages": []}], [], tmp_path / "out", run_name="r")
    assert not (tmp_path / "out").exists()


def test_permission_denied_is_a_clear_error(gcs, monkeypatch):
    def forbidden(uri):
        raise exceptions.Forbidden("caller does not have storage.objects.list access")

    monkeypatch.setattr(storage, "list_blobs", forbidden)
    with pytest.raises(InputError, match="permission denied; grant the job's service account"):
        CheckpointStore(PREFIX).check_access()


def test_bad_checkpoint_uri_and_run_name_are_rejected():
    with pytest.raises(ValueError, match="gs://BUCKET/PREFIX"):
        TrainConfig(checkpoint_uri="relative/ckpt")  # a local run's folder is absolute
    assert TrainConfig(checkpoint_uri="/tmp/ckpt/").checkpoint_uri == "/tmp/ckpt"
    with pytest.raises(InputError, match="cannot name a checkpoint folder"):
        checkpointing.task_prefix("gs://b/p", "a/b")


@pytest.fixture
def outage_gcs(monkeypatch):
    """A restartable emulator whose objects survive a stop (an outage, not data loss)."""
    emu = GcsEmulator(persistent=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emu.url)
    emu.create_bucket("ckpt")
    yield emu
    emu.close()


def test_uploads_retry_through_an_outage(outage_gcs, tmp_path, caplog):
    store = CheckpointStore(PREFIX)
    local = fake_checkpoint(tmp_path, 2)
    outage_gcs.stop()
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            store.upload_checkpoint(local, 2, "fp")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    with caplog.at_level(logging.DEBUG, logger="google.api_core.retry"):
        worker = threading.Thread(target=upload)
        worker.start()
        wait_until(lambda: "Retrying due to" in caplog.text, 30, "a retried upload")
        outage_gcs.start()
        worker.join(timeout=120)
    assert not worker.is_alive() and not errors, errors
    assert [(c.step, c.complete) for c in store.scan()] == [(2, True)]


def test_training_fails_cleanly_when_gcs_stays_down(outage_gcs, tmp_path, monkeypatch, tokenizer):
    """The emulator dies before checkpoint 4's upload: retries run out, training stops with a
    clear StorageUnavailable, checkpoint 2 stays complete, a rerun resumes from it."""
    from components.fine_tune.train import train
    from components.prepare_data.prepare import prepare

    monkeypatch.setattr(storage, "RETRY_TIMEOUT_S", 2.0)
    rows = prepare(DataConfig(dataset="embedded://dolly-15k-sample.jsonl",
                              base_model="embedded://tiny-gemma3", max_seq_len=128),
                   tokenizer).splits["train"][:12]
    cfg = TrainConfig(base_model="embedded://tiny-gemma3", max_seq_len=128, max_steps=4,
                      per_device_train_batch_size=2, lora_r=4, save_steps=2, save_minutes=0,
                      checkpoint_uri="gs://ckpt/root")
    upload = CheckpointStore.upload_checkpoint

    def dies_at_4(self, local_dir, step, fp):
        if step == 4:
            outage_gcs.stop()
        return upload(self, local_dir, step, fp)

    monkeypatch.setattr(CheckpointStore, "upload_checkpoint", dies_at_4)
    with pytest.raises(storage.StorageUnavailable, match=r"GCS kept failing for 2 s of retries"):
        train(cfg, rows, [], tmp_path / "a", run_name="outage")
    assert not (tmp_path / "a").exists(), "no final outputs from a failed run"

    outage_gcs.start()
    store = CheckpointStore(checkpointing.task_prefix("gs://ckpt/root", "outage"))
    assert [(c.step, c.complete) for c in store.scan()] == [(2, True)]
    monkeypatch.setattr(CheckpointStore, "upload_checkpoint", upload)
    assert train(cfg, rows, [], tmp_path / "b", run_name="outage").metrics.resumed_from_step == 2


def test_time_based_save_is_requested_after_save_minutes(tmp_path):
    from transformers import TrainerControl, TrainerState

    cb = checkpointing.make_callback(CheckpointStore(PREFIX), TrainConfig(save_minutes=5), "fp",
                                     tmp_path / "log")
    control = TrainerControl()
    cb.on_train_begin(None, TrainerState(), control)
    cb.on_step_end(None, TrainerState(), control)
    assert not control.should_save
    cb.last_save -= 5 * 60  # five minutes since the last checkpoint
    cb.on_step_end(None, TrainerState(), control)
    assert control.should_save

    off = checkpointing.make_callback(CheckpointStore(PREFIX), TrainConfig(save_minutes=0), "fp",
                                      tmp_path / "log")
    off.last_save -= 10**6
    control = TrainerControl()
    off.on_step_end(None, TrainerState(), control)
    assert not control.should_save
