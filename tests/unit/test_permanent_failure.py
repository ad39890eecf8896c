"""A permanent error in fine-tune is recorded under the run's checkpoints (fake-gcs-server), so a
restart or retry of the same Vertex job stops in seconds; a resumed run (a new job) starts clean."""

from __future__ import annotations

import pytest

from components.common.config import TrainConfig
from components.common.errors import InputError
from components.fine_tune import permanent
from components.fine_tune.train import run_fine_tune


def attempt(cfg: TrainConfig, job: str, tmp_path) -> None:
    run_fine_tune(cfg, train=str(tmp_path / "t.jsonl"), validation=str(tmp_path / "v.jsonl"),
                  model=str(tmp_path / "model"), run_id=job)


def _bf16_gpu() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@pytest.mark.skipif(_bf16_gpu(), reason="the bad input used here (bf16=true) is fine on this GPU")
def test_a_restart_of_a_job_that_failed_permanently_stops_at_once(gcs, tmp_path) -> None:
    cfg = TrainConfig(checkpoint_uri="gs://ckpt/runs", run_name="weekly", bf16="true")
    with pytest.raises(InputError, match="bf16") as first:
        attempt(cfg, "job-1", tmp_path)  # no bf16 on this CPU: bad input, the same every time
    uri = permanent.record_uri("gs://ckpt/runs/weekly/fine-tune", "job-1")
    assert gcs.client().bucket("ckpt").blob(uri.removeprefix("gs://ckpt/")).exists()
    with pytest.raises(InputError, match="an earlier attempt of job-1 failed permanently") as again:
        attempt(cfg, "job-1", tmp_path)
    assert str(first.value).splitlines()[0][:80] in str(again.value)
    with pytest.raises(InputError, match="bf16") as resumed:  # a new job: the real check again
        attempt(cfg, "job-2", tmp_path)
    assert "earlier attempt" not in str(resumed.value)


def test_only_bad_input_and_out_of_memory_count_as_permanent() -> None:
    assert permanent.is_permanent(InputError("bad"))
    assert permanent.is_permanent(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not permanent.is_permanent(RuntimeError("NCCL watchdog timeout"))
    assert not permanent.is_permanent(ConnectionError("GCS unreachable"))
