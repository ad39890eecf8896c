"""Fetch-base-model step: the base model, once, into a Model artifact every later step reads.

Why a step: fetched once, on a small CPU machine, into the pipeline root, the base is read from
there by every later step, so no GPU machine downloads 2 GB from the hub or needs the HF token,
and with caching a resubmit does not fetch at all.

    uv run python -m components.fetch_model.fetch --base_model embedded://tiny-gemma3 --model /tmp/base
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from components.common.config import FetchConfig
from components.common.errors import InputError
from components.common.modeling import SOURCE_FILE, is_hub_id, load_tokenizer
from components.common.paths import resolve_embedded
from components.common.results import FetchedModel
from components.common.storage import download_folder, gcs_errors, is_gcs

# What from_pretrained needs; repos also carry duplicate weights (.bin, .gguf, original/).
HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.jinja", "*.txt"]


def from_hub(repo_id: str, dest: Path) -> str:
    """Download `repo_id` at its current commit into `dest`; returns that commit."""
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    # (the library reads HF_HUB_OFFLINE once, at import; the environment may have changed since)
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    if offline or constants.is_offline_mode():
        raise InputError(f"cannot download {repo_id}: HF_HUB_OFFLINE is set; unset it, or give "
                         "base_model as a gs:// or local folder")
    token = os.environ.get("HF_TOKEN") or None
    try:
        revision = HfApi().model_info(repo_id, token=token).sha
        snapshot_download(repo_id, revision=revision, local_dir=dest,
                          allow_patterns=HUB_PATTERNS, token=token)
    except GatedRepoError:
        raise InputError(
            f"{repo_id} is gated: accept its licence at https://huggingface.co/{repo_id} with "
            "the account whose token this step reads "
            + ("(HF_TOKEN is set but has no access)" if token else
               "(no HF_TOKEN: give hf_token_secret on Vertex, HF_TOKEN in .env locally)")
        ) from None
    except RepositoryNotFoundError:
        raise InputError(f"{repo_id} is not a model on the Hugging Face Hub (or it is private "
                         "and the token cannot see it); check base_model") from None
    except Exception as exc:  # noqa: BLE001 - network down, DNS, proxy, disk: one clear line
        raise InputError(f"cannot download {repo_id} from the Hugging Face Hub "
                         f"({exc.__class__.__name__}: {str(exc)[:200]})") from None
    shutil.rmtree(dest / ".cache", ignore_errors=True)  # the hub's download bookkeeping
    return revision or ""


def fetch_model(ref: str, dest: Path) -> dict[str, Any]:
    """Put the model `ref` names into `dest` and check it loads; returns its description.

    It is downloaded and checked on local disk first, then copied into `dest` whole: on Vertex
    `dest` is the /gcs FUSE mount, which suits one sequential copy better than the Hub's
    locking, partial-file downloader, and a failed fetch leaves no half-written artifact."""
    t0 = time.perf_counter()
    revision = ""
    local = resolve_embedded(ref)  # an unknown embedded:// name: InputError naming the known ones
    with tempfile.TemporaryDirectory(prefix="fetch-") as tmp:
        work = Path(tmp) / "model"
        if is_gcs(ref):
            with gcs_errors(ref, "download the base model from"):
                download_folder(ref, work)
        elif Path(local).is_dir():
            shutil.copytree(local, work)
        elif is_hub_id(ref):
            revision = from_hub(ref, work)
        else:
            raise InputError(f"base_model {ref!r} is neither a Hugging Face model id (org/name), "
                             "a gs:// folder, a local folder nor an embedded:// model")
        if not (work / "config.json").is_file():
            raise InputError(f"{ref} has no config.json: not a Transformers model folder")
        load_tokenizer(str(work))  # refuses a model without a chat template, here, not later
        (work / SOURCE_FILE).write_text(json.dumps({"ref": ref, "revision": revision}, indent=2))
        shutil.copytree(work, dest, dirs_exist_ok=True)
    files = [p for p in dest.rglob("*") if p.is_file()]
    return {
        "source": ref,
        "revision": revision,
        "files": len(files),
        "size_mb": round(sum(p.stat().st_size for p in files) / 1e6, 1),
        "step_seconds": round(time.perf_counter() - t0, 2),
    }


def run_fetch(cfg: FetchConfig, *, model: str) -> dict[str, FetchedModel]:
    """Fetch `cfg.base_model` into the folder `model` (the step's Model artifact); the HF token
    comes from `cfg.hf_token_secret` on Vertex, from the environment elsewhere."""
    from components.common.step import step_run

    # No tracking run: nothing to plot, and the step must not need a W&B key.
    with step_run("fetch-base-model", cfg):
        return {"model": FetchedModel(**fetch_model(cfg.base_model, Path(model)))}


def main(argv: list[str] | None = None) -> None:
    from components.common.step import main as step_main

    step_main(run_fetch, argv)


if __name__ == "__main__":
    main()
