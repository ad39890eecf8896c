"""What `submit --local` checks before it runs, and the warnings it prints once they pass."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cli.run_output import terminal_console
from components.common.errors import InputError


def preflight(params: dict[str, Any]) -> dict[str, Any]:
    """Run every check the steps would, without writing anything. Returns the data stats.

    Cheapest first: settings, names and small files, then the data file's format and rows
    (before any tokenizer or torch import, so a bad file is refused in about a second), then
    what needs the model's config. Each step's public `check` does its part."""
    from components.common.config import DataConfig, InferenceConfig, TrainConfig, build
    from components.common.modeling import check_target_modules
    from components.fine_tune.train import check as check_fine_tune
    from components.inference.infer import check as check_inference
    from components.prepare_data.prepare import check as check_data

    if note := check_hub(params):
        terminal_console().print(f"[yellow]{note}[/]")
    data_cfg = build(DataConfig, params)
    train_cfg = build(TrainConfig, params)
    check_fine_tune(train_cfg)  # the steps run on this machine: its bf16, the checkpoint bucket
    check_inference(build(InferenceConfig, params))  # read two minutes in: check it now
    stats = check_data(data_cfg).stats
    check_target_modules(train_cfg.base_model, train_cfg.target_module_list)
    return stats


def gate_rows_warning(params: dict[str, Any], stats: dict[str, Any]) -> str | None:
    """One line when the run will score fewer test rows than the gate decides on."""
    split, cap, need = stats["test_rows"], params.get("eval_max_rows") or 0, params["gate_min_rows"]
    scored = min(split, cap) if cap else split
    if scored >= need:
        return None
    if cap and cap < need <= split:
        fix = f"raise eval_max_rows to at least {need} (or 0: all {split})"
    else:
        fraction = math.ceil(100 * need / max(1, stats["kept_rows"])) / 100
        fix = (f"raise test_fraction (now {params['test_fraction']}) to about {fraction}"
               if fraction < 0.5 else "use more data") + (" and eval_max_rows" if cap else "")
    return (f"warning: too few test rows for the gate to decide ({scored} will be scored, "
            f"`gate_min_rows` is {need}): nothing will be registered; {fix}")


def checked(params: dict[str, Any], stats: dict[str, Any], defaults: dict[str, Any]) -> None:
    """What the checks found, printed only once they all passed (bad input: one line only)."""
    console = terminal_console()
    if defaults:
        console.print(
            f"[yellow]base_model {params['base_model']} is not the embedded tiny model: using "
            "the real defaults " + ", ".join(f"{k}={v}" for k, v in defaults.items())
            + " (the embedded values suit the tiny model only); --param overrides any of them[/]"
        )
    revision = f" at {stats['dataset_revision'][:12]}" if stats.get("dataset_revision") else ""
    console.print(
        f"[bold]Checked parameters and data[/] ({params['dataset']}{revision}): format: "
        f"{stats['data_format']}, {stats['source_rows']:,} rows, {stats['kept_rows']:,} kept "
        f"({stats['rejected_rows']:,} rejected), split {stats['split_hash']}"
    )
    if stats.get("test_overlap_rows"):
        console.print(f"  {stats['test_overlap_rows']} test rows copy a training row; "
                      + (f"{stats['test_overlap_dropped']} dropped from the test split"
                         if stats["test_overlap_dropped"] else "kept (drop_test_overlap=false)"))
    if warning := gate_rows_warning(params, stats):
        console.print(f"  [yellow]{warning}[/]", soft_wrap=True, highlight=False)
    if stats.get("categories_without_test_rows"):
        console.print("  [yellow]no test rows for categor"
                      f"{'y' if len(stats['categories_without_test_rows']) == 1 else 'ies'} "
                      f"{', '.join(stats['categories_without_test_rows'])}[/]")
    if stats.get("renamed_categories"):
        console.print("  category names normalised: " + ", ".join(
            f"{k} ({v} rows)" for k, v in stats["renamed_categories"].items()))


MB = 1_000_000
LOGS_BYTES = 5 * MB  # steps.log, W&B's offline files, reports, data splits (measured ~1 MB)


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_estimate(params: dict[str, Any]) -> dict[str, int]:
    """What a local run writes, by part (bytes): the fetched base model, the merged model, the
    adapter, the fine-tune checkpoints kept (plus the one being written) and the logs. A hub
    model not in this machine's cache counts as unknown (0) for the first two."""
    from components.common.memory import ModelShape, lora_params
    from components.common.paths import resolve_embedded

    base = Path(resolve_embedded(params["base_model"]))
    out = {"base model": 0, "merged model": 0, "adapter": 0, "checkpoints": 0,
           "logs": LOGS_BYTES}
    if not base.is_dir():
        return out
    out["base model"] = out["merged model"] = _folder_bytes(base)
    config = base / "config.json"
    if config.exists():  # read as JSON: importing transformers costs seconds
        c = json.loads(config.read_text())
        try:
            shape = ModelShape.of(SimpleNamespace(**c.get("text_config", c)))
        except (AttributeError, TypeError):  # a config that leaves its sizes to defaults
            return out
        adapter = 4 * lora_params(shape, int(params["lora_r"]))  # fp32
        out["adapter"] = 2 * adapter  # the fine-tune output and export's copy
        # adapter, best adapter, Adam's two moments per checkpoint
        out["checkpoints"] = (int(params["save_total_limit"]) + 1) * 4 * adapter
    return out


def free_bytes(folder: Path) -> tuple[Path, int]:
    """The nearest existing folder of `folder` and the space free to this user there."""
    q = folder
    while not q.exists():
        q = q.parent
    return q, shutil.disk_usage(q).free


def check_disk(params: dict[str, Any], run_root: Path) -> dict[str, int]:
    """Refuse, in one line, a run whose outputs do not fit on the output folder's disk."""
    need = write_estimate(params)
    _, free = free_bytes(run_root)
    if sum(need.values()) > free:
        parts = ", ".join(f"{k} {v / MB:.0f} MB" for k, v in need.items() if v)
        raise InputError(
            f"--output-dir {run_root.parent}: the run writes about {sum(need.values()) / MB:.0f} "
            f"MB ({parts}) and its disk has {free / MB:.0f} MB free; free some space or give an "
            "--output-dir on a disk with room")
    return need


def check_hub(params: dict[str, Any], timeout: float = 3.0) -> str | None:
    """A Hugging Face id (base_model, dataset) answered in seconds, not after the hub client's
    retries: with HF_HUB_OFFLINE set it must be in the local cache; otherwise, when the hub does
    not answer, the cached copy is used (HF_HUB_OFFLINE=1 for the run, returned as a note) or
    the run is refused in one line."""
    import os

    from huggingface_hub import constants

    from cli.failures import unreachable
    from components.common.modeling import HUB_ID

    wanted = [(name, kind, params.get(name, "")) for name, kind in
              (("base_model", "model"), ("dataset", "dataset"))]
    files = (".jsonl", ".json", ".csv", ".parquet", ".txt")  # a dataset path, not a hub id
    wanted = [(n, k, ref) for n, k, ref in wanted if HUB_ID.match(ref) and not Path(ref).exists()
              and not (k == "dataset" and ref.lower().endswith(files))]
    def cached(kind: str, ref: str) -> bool:
        folder = Path(constants.HF_HUB_CACHE) / f"{kind}s--{ref.replace('/', '--')}"
        return any(folder.glob("snapshots/*/*"))

    offline = constants.HF_HUB_OFFLINE
    if offline:  # a dataset id not in the cache: the data check says so, naming the path too
        wanted = [w for w in wanted if w[1] == "model"]
    if not wanted:
        return None
    why = None if offline else unreachable(constants.ENDPOINT, timeout)
    if not offline and why is None:
        return None
    missing = [(n, ref) for n, k, ref in wanted if not cached(k, ref)]
    if missing:
        name, ref = missing[0]
        if offline:
            raise InputError(f"{name} {ref} is not in the local Hugging Face cache and "
                             "HF_HUB_OFFLINE is set; unset it (with a network) to download it "
                             "once, or give a local path")
        if name == "dataset":  # the same words as the data check's, which runs later
            raise InputError(f"dataset {ref!r} is not a file here ({Path.cwd()}) and reading "
                             "it as a Hugging Face dataset id needs network access to the hub, "
                             f"which does not answer ({why}); check the network (HTTPS_PROXY), "
                             f"or give the path of a data file (e.g. ./{ref}.jsonl)")
        raise InputError(f"{name} {ref} cannot be fetched: the Hugging Face hub does "
                         f"not answer ({why}); check the network (HTTPS_PROXY), or give a "
                         "local path")
    if offline:
        return None
    os.environ["HF_HUB_OFFLINE"] = "1"  # the steps inherit it: no retries in any of them
    return f"the Hugging Face hub does not answer ({why}): using the cached copies"
