"""An isolated Python environment with the serving image's transformers (4.x), made by uv and
cached under build/, to load what the export step writes the way the serving container does.

torch is not downloaded again (PyPI's Linux wheel is the CUDA build, GBs): a .pth file puts a
folder on the path that holds links to this environment's torch and nothing else, so the 4.x
side sees the same torch and its own transformers, tokenizers and huggingface-hub."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from components.common.serving import SERVING_IMAGE_DATE

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "serving-transformers"
# torch's own folders and the compiled libraries it loads at import (CUDA builds).
TORCH_PACKAGES = ("torch", "functorch", "torchgen", "triton", "nvidia", "cuda")


def _torch_only_dir() -> Path:
    """A folder of links to torch (its code, metadata and native libraries) and nothing else."""
    dist = importlib.metadata.distribution("torch")
    site = Path(str(dist.locate_file("")))
    links = CACHE / f"torch-only-{dist.version}"
    links.mkdir(parents=True, exist_ok=True)
    names = [p for p in TORCH_PACKAGES if (site / p).exists()]
    names += [p.name for p in site.glob("torch-*.dist-info")]
    for name in names:
        link = links / name
        if not link.exists():
            link.symlink_to(site / name)
    return links


def _torch_python_requirements() -> list[str]:
    """torch's pure-Python requirements (sympy, jinja2, ...), as its own metadata states them;
    the nvidia-*, cuda-* and triton wheels are already behind the links."""
    reqs = importlib.metadata.requires("torch") or []
    keep = []
    for req in reqs:
        name = re.split(r"[ ;<>=!~\[]", req, maxsplit=1)[0].lower()
        if "extra ==" in req or name.startswith(("nvidia-", "cuda-")) or name in {"triton", "setuptools"}:
            continue
        keep.append(req.split(";")[0].strip())
    return keep


def python(transformers_version: str, as_of: str = SERVING_IMAGE_DATE) -> Path:
    """The interpreter of an environment with transformers==`transformers_version`, its other
    packages as PyPI had them on `as_of` (the serving image's date), and this environment's
    torch; made once (needs PyPI), then reused from build/."""
    env = CACHE / f"transformers-{transformers_version}-{as_of}"
    exe = env / "bin" / "python"
    done = env / ".complete"
    if done.is_file():
        return exe
    uv = os.environ.get("UV", "uv")
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(env)], check=True)
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(exe), "--exclude-newer", as_of,
         f"transformers=={transformers_version}", "safetensors", *_torch_python_requirements()],
        check=True,
    )
    site = subprocess.run(
        [str(exe), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    (Path(site) / "torch_only.pth").write_text(f"{_torch_only_dir()}\n")
    done.write_text(transformers_version)
    return exe


def run(transformers_version: str, script: Path, *args: str, timeout: int = 600) -> dict:
    """Run `script` under that environment (offline) and parse the JSON it prints last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [str(python(transformers_version)), str(script), *args],
        capture_output=True, text=True, env=env, timeout=timeout, cwd="/",
    )
    if proc.returncode != 0:
        raise RuntimeError(f"transformers {transformers_version}: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
