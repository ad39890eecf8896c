"""`submit --local --checkpoint-uri` checks the bucket (fake-gcs-server) before any step runs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.submit import app

pytestmark = pytest.mark.integration


def test_missing_checkpoint_bucket_fails_before_any_step(tmp_path, gcs):
    result = CliRunner().invoke(app, ["--local", "--output-dir", str(tmp_path / "runs"),
                                      "--checkpoint-uri", "gs://no-such-bucket/ckpt"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "bucket gs://no-such-bucket does not exist" in lines[0]
    assert not (tmp_path / "runs").exists()
