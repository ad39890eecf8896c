"""The local server of `submit serve`: transformers' own OpenAI-compatible server, pinned to a
run's merged model and answering under a short name, as vLLM's --served-model-name does.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import typer

from components.common.serving import display_name_for

MERGED_ARTIFACT = "export.merged"
REGISTERED_ARTIFACT = "register-model.registered_model"


def find_merged_model(run_dir: Path) -> Path:
    """The merged model folder of a local run (its summary.json names it), or `run_dir` itself
    when it is a model folder."""
    from components.common.errors import InputError

    if not run_dir.exists():
        raise InputError(f"{run_dir} does not exist; give a run folder (runs/RUN_ID) or a model "
                         "folder")
    if (run_dir / "config.json").is_file() and any(run_dir.glob("*.safetensors")):
        return run_dir
    summary = run_dir / "summary.json"
    if summary.is_file():
        path = json.loads(summary.read_text()).get("artifacts", {}).get(MERGED_ARTIFACT)
        if path and (Path(path) / "config.json").is_file():
            return Path(path)
    found = sorted(run_dir.glob("pipeline/*/export/merged/config.json"))
    if found:
        return found[-1].parent
    flag = "" if run_dir.parent == Path("runs") else f" --output-dir {run_dir.parent}"
    resume = f"`uv run submit --local{flag} --resume {run_dir.name}`"
    if not summary.is_file():
        raise InputError(f"no merged model in {run_dir}: the run has no summary.json (it is "
                         f"still running, or was killed before it ended); resume it with {resume}")
    done = json.loads(summary.read_text())
    if done.get("status") == "interrupted":
        raise InputError(f"no merged model in {run_dir}: the run was interrupted before export; "
                         f"resume it with {resume}")
    if done.get("status") != "SUCCESS":
        failed = [k for k, v in done.get("steps", {}).items() if v.get("status") != "SUCCESS"]
        raise InputError(f"no merged model in {run_dir}: the run failed"
                         + (f" in {failed[0]}" if failed else "")
                         + f" ({done.get('error') or 'see steps.log'}); see {run_dir / 'steps.log'}")
    raise InputError(
        f"no merged model in {run_dir}: the export step runs only when the tuned model passes "
        f"the gate ({done.get('eval', {}).get('verdict') or 'see eval in ' + str(summary)}); "
        "or give a model folder"
    )


def default_served_name(run_dir: Path, model_dir: Path) -> str:
    """The short name `submit serve` answers under: the registry model the run's register step
    named (its record), else the one it would name for the merged model's base model
    (`export.json`), else for the folder. As vLLM's --served-model-name: an OpenAI client
    gets a name it can send, not a path on this machine."""
    summary = run_dir / "summary.json"
    if summary.is_file():
        record = json.loads(summary.read_text()).get("artifacts", {}).get(REGISTERED_ARTIFACT)
        if record and Path(record).is_file():
            name = json.loads(Path(record).read_text()).get("display_name")
            if name:
                return str(name)
    export = model_dir / "export.json"
    base = json.loads(export.read_text()).get("base_model") if export.is_file() else None
    return display_name_for(base or model_dir.name)


def check_port_free(host: str, port: int) -> None:
    from components.common.errors import InputError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another "
                             "--port or stop what uses it") from None


def pinned_model_manager(served_name: str, model_dir: Path) -> type:
    """transformers serve's ModelManager answering for `model_dir` under `served_name` (what
    vLLM's --served-model-name does; transformers serve has no such flag). Given as
    `force_model`, the name is what /v1/models lists and the only `model` a request may name;
    another gets 400 "Server is pinned to '<name>'". The weights are read from the folder."""
    from transformers.cli.serving.model_manager import ModelManager

    weights = str(model_dir.resolve())

    def resolve(name: str) -> str:
        return weights if name == served_name else name

    class PinnedModelManager(ModelManager):
        def process_model_name(self, model_id: str) -> str:  # type: ignore[override]
            # The name is not a Hub repo: no '@main' revision appended.
            return model_id if model_id == served_name else super().process_model_name(model_id)

        def load_model_and_processor(self, model_id_and_revision: str, *args: Any,
                                     **kwargs: Any) -> Any:
            return super().load_model_and_processor(resolve(model_id_and_revision), *args,
                                                    **kwargs)

    return PinnedModelManager


def start_server(model_dir: Path, host: str, port: int, device: str = "auto",
                 served_name: str = "") -> None:
    """transformers' own server, pinned to the model folder under `served_name`, offline. fp32
    on CPU: the arithmetic the inference step uses there (bf16 is far slower on CPU), bf16 on a
    GPU."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: nothing to download
    import torch
    from transformers.cli.serve import Serve
    from transformers.cli.serving import model_manager

    served_name = served_name or default_served_name(model_dir, model_dir)
    cuda = torch.cuda.is_available() and device != "cpu"
    typer.secho(f"serving {model_dir} as model {served_name} at http://{host}:{port}/v1 "
                f"(OpenAI-compatible); ask it: submit predict --local http://{host}:{port} "
                "\"...\"", err=True)
    # Serve builds its ModelManager from this module when called: the pinned one, for this call.
    original = model_manager.ModelManager
    model_manager.ModelManager = pinned_model_manager(served_name, model_dir)
    try:
        Serve(force_model=served_name, host=host, port=port, device=device,
              dtype="bfloat16" if cuda else "float32", log_level="warning")
    finally:
        model_manager.ModelManager = original
