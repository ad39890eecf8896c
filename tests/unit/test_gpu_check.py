"""scripts/gpu_check.sh: one JSON with every section the README's GPU rows need; its CPU smoke
mode runs here with the same keys; a failing section is recorded, not lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run_script(*args: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, **env_vars}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=900, cwd="/")


def test_smoke_generation_section_and_the_report_shape(tmp_path) -> None:
    proc = run_script("--cpu-smoke", "--only", "generation", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(gpu_check.SECTIONS) <= report.keys()
    assert report["mode"] == "cpu-smoke" and report["device"] == "cpu"
    gen = report["generation"]
    assert gen["ok"] is True and gen["tokens_per_s"] > 0
    assert gen["batch"] * gen["new_tokens"] / gen["seconds"] == pytest.approx(
        gen["tokens_per_s"], rel=0.01)
    assert (gen["vocab"], gen["layers"]) == (262_144, 1)  # the 1B's widths, one layer
    assert all(report[k] == {"ok": None, "skipped": True} for k in gpu_check.SECTIONS
               if k != "generation")
    assert proc.stdout.strip().splitlines()[-1].endswith("every section ok")


def test_gpu_mode_without_a_gpu_is_one_line_and_writes_nothing(tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    proc = run_script("--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "no CUDA GPU here: use --cpu-smoke" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_failing_section_is_recorded_and_the_rest_still_run(tmp_path, monkeypatch) -> None:
    def broken(profile: str, smoke: bool) -> dict:
        raise RuntimeError(f"{profile} fell over")

    monkeypatch.setattr(gpu_check, "lora", broken)
    report = gpu_check.main(["--cpu-smoke", "--only", "lora_1b", "--only", "generation",
                             "--out", str(tmp_path)])
    assert report["lora_1b"]["ok"] is False
    assert report["lora_1b"]["error"] == "RuntimeError: default fell over"
    assert report["generation"]["ok"] is True
    assert json.loads((tmp_path / "gpu_check.json").read_text())["lora_1b"]["ok"] is False


def test_the_time_limit_stops_every_process_and_keeps_the_json(tmp_path) -> None:
    proc = run_script("--cpu-smoke", "--only", "pipeline", "--out", str(tmp_path),
                      GPU_CHECK_LIMIT_S="15")
    assert proc.returncode == 124
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["pipeline"] == {"ok": False, "error": "stopped by SIGTERM (the time limit)"}
    assert report["lora_1b"] == {"ok": None, "skipped": True}
    assert [p for p in Path("/proc").glob("[0-9]*") if str(tmp_path) in cmdline(p)] == [], \
        "the pipeline's processes outlived the limit"


def cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:  # gone meanwhile
        return ""


@pytest.mark.slow
def test_the_whole_cpu_smoke_runs_every_section(tmp_path) -> None:
    proc = run_script("--cpu-smoke", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    for name in gpu_check.SECTIONS:
        assert report[name]["ok"] is True, (name, report[name])
    for name in ("lora_1b", "qlora_4b"):
        assert report[name]["tokens_per_s"] > 0
        assert set(gpu_check.LORA_KEYS) <= report[name].keys()
        assert report[name]["planned_gib"] > 0  # the profile's arithmetic, to compare with
    pipe = report["pipeline"]
    assert pipe["fine_tune"]["batching"] == "packed" and pipe["fine_tune"]["bf16"] is False
    assert pipe["fine_tune"]["tokens_per_s"] > 0 and pipe["inference"]["tokens_per_second"] > 0
    assert set(pipe["steps_s"]) >= {"fine-tune", "evaluate", "inference"}
