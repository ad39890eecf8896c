"""`submit --sweep` for Vertex: the dry run compiles the sweep's own template (a ParallelFor
with its parallelism), sends it, and prices every trial; --max-cost covers the whole sweep."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.cli.test_vertex_submit import BASE, all_tasks, clean_env, invoke  # noqa: F401
from tests.cli.vertex_fakes import IMAGE

SWEEP = ["--sweep", "max_steps=50,100,200", "--sweep-parallelism", "2"]


def dry(monkeypatch: pytest.MonkeyPatch, *args: str):
    monkeypatch.setenv("DOLLY_LORA_IMAGE", IMAGE)
    return invoke(*BASE, *args, "--dry-run")


def test_dry_run_sends_the_sweep_template_and_prices_every_trial(
        vertex, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    r = dry(monkeypatch, *SWEEP)
    assert r.exit_code == 0, r.output
    assert "sweep: 3 trials, 2 at a time: max_steps=50; max_steps=100; max_steps=200" in r.stderr
    tpl = yaml.safe_load(next(Path("build").glob("*-sweep.yaml")).read_text())
    [loop] = [t for t in tpl["root"]["dag"]["tasks"].values() if "parameterIterator" in t]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    spec = json.loads(r.stdout)["request"]["pipelineJob"]["pipelineSpec"]
    assert "select-trial" in all_tasks(spec)
    trials = {int(m.group(1)): float(m.group(2)) for m in re.finditer(
        r"fine-tune max_steps=(\d+): .* expected ([\d.]+) min", r.stderr)}
    assert sorted(trials) == [50, 100, 200]
    assert trials[50] < trials[100] < trials[200]  # each trial priced with its own settings
    single = dry(monkeypatch, "--param", "max_steps=200")
    one = float(re.search(r"estimated cost: \$([\d.]+)", single.stderr).group(1))
    swept = float(re.search(r"estimated cost: \$([\d.]+)", r.stderr).group(1))
    assert swept > one
    worst = [float(x) for x in re.findall(r"worst case .*: \$([\d.]+)", r.stderr)]
    worst_one = [float(x) for x in re.findall(r"worst case .*: \$([\d.]+)", single.stderr)]
    assert worst[0] > worst_one[0]


def test_max_cost_covers_the_whole_sweep(vertex, monkeypatch: pytest.MonkeyPatch) -> None:
    single = dry(monkeypatch, "--param", "max_steps=50")
    worst_one = float(re.search(r"worst case .*: \$([\d.]+)", single.stderr).group(1))
    r = dry(monkeypatch, *SWEEP, "--max-cost", f"{worst_one * 1.05:.2f}")
    assert r.exit_code == 2, r.output
    assert "worst case" in r.stderr.splitlines()[-1]


def test_a_plain_submit_after_a_sweep_sends_the_single_dag(
        vertex, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dry(monkeypatch, *SWEEP).exit_code == 0
    r = dry(monkeypatch)
    assert r.exit_code == 0, r.output
    spec = json.loads(r.stdout)["request"]["pipelineJob"]["pipelineSpec"]
    assert "select-trial" not in all_tasks(spec) and "fine-tune" in spec["root"]["dag"]["tasks"]
