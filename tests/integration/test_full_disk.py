"""A small or read-only output disk, for real: tmpfs mounts (root only; skipped otherwise, with
the reason). Refused up front in one line, or, when the disk fills mid-run, one line naming the
step, the folder and the space needed, and a folder `--resume` finishes from."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gcs_emulator import wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join((f"size={size}", *options))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small", "6m") as disk:
        yield disk


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "ro", "1m", "ro") as disk:
        yield disk


def submit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.submit", "--local", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_a_6_mb_disk_is_refused_before_the_run_in_one_line(small_disk: Path) -> None:
    done = submit("--output-dir", str(small_disk), "--run-id", "tiny")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "the run writes about" in lines[0] and "its disk has 6 MB free" in lines[0]
    assert "base model 5 MB" in lines[0] and "checkpoints" in lines[0]
    assert list(small_disk.iterdir()) == [], "nothing written"


def test_a_read_only_output_dir_is_refused_in_one_line(read_only_disk: Path) -> None:
    for target in (read_only_disk, read_only_disk / "below"):
        done = submit("--output-dir", str(target))
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "read-only" in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.e2e
def test_a_disk_that_fills_mid_run_ends_in_one_line_and_resumes(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "40m") as disk:
        runs = disk / "runs"
        args = ["--output-dir", str(runs), "--run-id", "full", "--param", "max_steps=30",
                "--param", "save_steps=5", "--param", "max_new_tokens=4",
                "--param", "eval_max_rows=8"]
        log = tmp_path / "first.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "cli.submit", "--local", *args],
                                    cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        ckpts = runs / "full" / "checkpoints" / "full" / "fine-tune" / "checkpoints"
        wait_until(lambda: proc.poll() is None and any(ckpts.glob("step-*/COMPLETE.json")),
                   600, "the first complete checkpoint", interval=0.5)
        filler = disk / "filler"
        assert os.path.ismount(disk), "only ever fill the small test disk"
        with filler.open("wb") as f:  # take every byte left: the next checkpoint cannot fit
            try:
                for _ in range(64):  # 64 MB at most, more than the 40 MB disk has
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        assert proc.wait(timeout=300) == 1, log.read_text()[-3000:]
        out = log.read_text()
        line = [x for x in out.splitlines() if ": the disk of " in x]
        assert len(line) == 1, out
        assert "fine-tune: the disk of " in line[0] and str(runs / "full") in line[0]
        assert "MB more); free some space, then resume with" in line[0]
        assert "Traceback" not in out
        assert not (runs / "full" / ".lock").exists()

        filler.unlink()
        done = submit("--output-dir", str(runs), "--resume", "full", timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads((runs / "full" / "summary.json").read_text())
        assert summary["status"] == "SUCCESS" and summary["final_step"] == 30
        assert summary["resumed_from_step"] >= 5
