"""Load the tokenizer and model the same way for every model reference, on the right device.

Why one place: the embedded tiny Gemma 3 and `google/gemma-3-1b-it` go through exactly the same
`from_pretrained` calls; only the reference resolves differently (`embedded://`, `gs://`, a local
folder or a Hugging Face id, whose HF_TOKEN comes from the environment, never a parameter). In
the pipeline the reference is the fetch-base-model step's folder, so no GPU step downloads.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from components.common.errors import InputError
from components.common.paths import resolve_embedded
from components.common.storage import download_folder, is_gcs

# Written by the fetch-base-model step next to the weights: where they came from.
SOURCE_FILE = "fetched_from.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# Oldest driver each CUDA major version of torch runs on (CUDA minor-version compatibility:
# every 12.x runtime runs on an R525+ driver; 13.x needs R580).
MIN_DRIVER = {"12": "525.60.13", "13": "580.65.06"}
log = logging.getLogger(__name__)


def is_hub_id(ref: str) -> bool:
    """`org/name` that is not a folder here: a Hugging Face Hub model id."""
    return bool(HUB_ID.match(ref)) and not Path(ref).exists()


@functools.lru_cache(maxsize=8)
def _download_once(uri: str) -> str:
    """A gs:// folder is downloaded once per process, however many loads ask for it."""
    return str(download_folder(uri, Path(tempfile.mkdtemp(prefix="model-"))))


def resolve_model_ref(ref: str) -> str:
    """A string `from_pretrained` accepts: a local folder or a hub id."""
    ref = resolve_embedded(ref)
    if is_gcs(ref):
        return _download_once(ref)
    return ref


def _fetched(ref: str) -> dict[str, Any]:
    path = Path(ref) / SOURCE_FILE
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("ref"), str) else {}


def model_source(ref: str) -> str:
    """The reference a fetched model folder came from (its `fetched_from.json`), else `ref`:
    what reports, labels and the registry show instead of a pipeline-root path."""
    return _fetched(ref).get("ref", ref)


def model_identity(ref: str) -> str:
    """`source@revision` of a fetched folder (same weights, same identity, wherever the folder
    lives), else `ref`: what a checkpoint may only be resumed with."""
    found = _fetched(ref)
    if not found:
        return ref
    return f"{found['ref']}@{found['revision']}" if found.get("revision") else found["ref"]


def load_tokenizer(ref: str, padding_side: str = "right") -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolve_model_ref(ref))
    except OSError as exc:
        raise InputError(
            f"cannot load the tokenizer of {ref!r} ({exc.__class__.__name__}); check the model id "
            "or path, and HF_TOKEN for gated models"
        ) from None
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        raise InputError(f"{ref!r} has no chat template; use an instruction-tuned model (…-it)")
    return tok


def best_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


class AcceleratorUnavailable(RuntimeError):
    """A step compiled for a GPU found no usable CUDA device."""


def parse_driver_version(text: str) -> str | None:
    """'NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat ...' -> '535.104.05'."""
    m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9]+\.[0-9.]+)", text)
    return m.group(1) if m else None


def _driver_version() -> str | None:
    """The NVIDIA kernel driver's version, or None when there is none to see."""
    try:
        if found := parse_driver_version(Path("/proc/driver/nvidia/version").read_text()):
            return found
    except OSError:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return out.strip().splitlines()[0] if out.strip() else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def cuda_diagnosis() -> str:
    """Why CUDA is not usable, in the terms that fix it: the torch build, the driver it needs,
    the driver and device nodes present, and CUDA's own error."""
    import torch

    cuda = torch.version.cuda
    reason = "torch.cuda.is_available() is False"
    try:
        torch.cuda.init()
    except Exception as exc:  # noqa: BLE001 - the message is the diagnosis
        reason = str(exc).strip().splitlines()[0] or reason
    nodes = sorted(p.name for p in Path("/dev").glob("nvidia[0-9]*"))
    driver = _driver_version()
    need = MIN_DRIVER.get((cuda or "").split(".")[0], "?")
    build = (f"torch {torch.__version__} is built for CUDA {cuda} and needs an NVIDIA driver "
             f">= {need}" if cuda else f"torch {torch.__version__} is a CPU-only build")
    return (f"{reason}; {build}; driver here: {driver or 'none'}; GPU devices: "
            f"{', '.join(nodes) or 'none'}; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")


def require_accelerator(required: str, step: str) -> str:
    """The device a step runs on. A step compiled for an accelerator (`required`, e.g.
    NVIDIA_L4) stops at once when CUDA is not usable, instead of training on CPU for hours on a
    GPU machine that is billed all the while. '' (the local runner) takes what there is."""
    if not required:
        return best_device()
    if best_device() == "cuda":
        return "cuda"
    raise AcceleratorUnavailable(
        f"{step} was compiled to run on {required} but CUDA is not usable here: "
        f"{cuda_diagnosis()}. Not falling back to CPU."
    )


def bf16_enabled(setting: str) -> bool:
    """'auto' turns bf16 on only on a GPU that supports it (on CPU it is ~10x slower here)."""
    import torch

    if setting == "false":
        return False
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if setting == "true" and not supported:
        here = (f"this machine's GPU ({torch.cuda.get_device_name(0)}) has none"
                if torch.cuda.is_available() else "this machine has no CUDA GPU")
        raise InputError(
            f"bf16=true needs a GPU with bf16 support and {here}; use bf16=auto (on wherever "
            "it is supported) or bf16=false"
        )
    return supported


def quantization_config(kind: str) -> Any:
    """transformers' BitsAndBytesConfig for `kind` ('nf4'), None for 'none'.

    NF4 with double quantization and bf16 compute, as in the QLoRA paper (Dettmers et al. 2023):
    4-bit NormalFloat weights (0.5 byte/param), their per-64 block scales quantized again to
    8 bits (~0.016 byte/param), matmuls in bf16. bitsandbytes >= 0.45 runs this on CPU too
    (slowly), which is what lets the tests exercise the path without a GPU."""
    if kind == "none":
        return None
    if kind != "nf4":
        raise InputError(f"quantization must be 'none' or 'nf4', got {kind!r}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise InputError(
            "quantization=nf4 needs bitsandbytes (installed with this project on Linux x86_64); "
            "use quantization=none on this platform"
        ) from None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_quant_storage=torch.uint8,
    )


def load_model(
    ref: str, bf16: bool = False, device: str | None = None, quantization: str = "none"
) -> Any:
    """The base model on `device` (default: the best there is). With quantization='nf4' the
    linear layers load as bitsandbytes 4-bit layers (quantized while loading, shard by shard, so
    a 12B model never sits in host memory in bf16); the rest (embeddings, norms) in bf16 on a
    GPU, fp32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or best_device()
    dtype = torch.bfloat16 if bf16 else torch.float32
    quant = quantization_config(quantization)
    if quant is None:
        if device == "cuda" and torch.cuda.device_count() > 1:
            # Evaluation and inference on a several-GPU machine (a model trained with FSDP may
            # fit no single GPU): fill GPU 0 first, spill layers onto the next only if needed.
            return AutoModelForCausalLM.from_pretrained(
                resolve_model_ref(ref), dtype=dtype, attn_implementation="sdpa",
                device_map="sequential",
            )
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model_ref(ref), dtype=dtype, attn_implementation="sdpa"
        )
        return model.to(device)
    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_ref(ref), dtype=dtype, attn_implementation="sdpa",
        quantization_config=quant, device_map={"": device},
    )
    keep_off_the_packed_cpu_kernel(model)
    return model


# bitsandbytes' AVX-512 BF16 CPU kernel for 4-bit weights: it repacks a weight in blocks of 32
# output rows, with one scale per `blocksize` inputs of a row (functional.py,
# _convert_weight_packed_for_cpu).
PACKED_CPU_BLOCK_N = 32


def packed_cpu_kernel_refusal(out_features: int, in_features: int, blocksize: int) -> str:
    """Why bitsandbytes' packed CPU kernel cannot take a 4-bit layer of this shape ('' if it
    can): what its repacking asserts (32 | outputs) and reshapes (blocksize | inputs)."""
    if out_features % PACKED_CPU_BLOCK_N:
        return f"{out_features} outputs, not a multiple of {PACKED_CPU_BLOCK_N}"
    if in_features % blocksize:
        return f"{in_features} inputs, not a multiple of the {blocksize}-weight quantization block"
    return ""


def keep_off_the_packed_cpu_kernel(model: Any) -> list[str]:
    """Turn bitsandbytes' packed CPU kernel off for the 4-bit layers it cannot take; their names.

    Why: on a CPU with AVX-512 BF16, `Linear4bit.forward` in eval mode with an input that needs
    no grad (evaluation, inference, generation) first repacks its weight for that kernel, and
    the repacking fails (AssertionError, or a reshape error) unless the shape fits. Real Gemma 3
    layers fit; a layer with, say, one 16-wide key/value head does not. Such a layer keeps the
    generic dequantizing matmul (the same NF4 weights, bf16 compute), so the run works on any
    CPU; layers that fit keep the fast kernel. The switch is the layer's own
    `support_avx512bf16_for_cpu`, which bitsandbytes sets from the CPU when it builds the layer
    and reads in every forward."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return []
    kept = []
    for name, module in model.named_modules():
        if not (isinstance(module, Linear4bit)
                and getattr(module, "support_avx512bf16_for_cpu", False)):
            continue
        state = getattr(module.weight, "quant_state", None)
        blocksize = getattr(state, "blocksize", None) or 64
        if packed_cpu_kernel_refusal(module.out_features, module.in_features, blocksize):
            module.support_avx512bf16_for_cpu = False
            kept.append(name)
    if kept:
        log.info("%d 4-bit layer(s) use bitsandbytes' generic CPU path, not the AVX-512 BF16 "
                 "kernel (their shape does not fit it): %s", len(kept), ", ".join(kept))
    return kept


def adapter_quantization(adapter_dir: str) -> str:
    """How the adapter's base was loaded while training ('none' or 'nf4', from its
    training_config.json): evaluation and inference load the base the same way, so the adapter
    meets the weights it was trained against."""
    path = Path(adapter_dir) / "training_config.json"
    try:
        found = json.loads(path.read_text()).get("quantization", "none")
    except (OSError, ValueError):
        return "none"
    return found if found in ("none", "nf4") else "none"


def linear_module_names(ref: str) -> set[str]:
    """Leaf names of the model's Linear layers, from its config alone (meta device: no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(resolve_model_ref(ref))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {
        name.rsplit(".", 1)[-1]
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear)
    }


def check_target_modules(ref: str, target_modules: list[str] | str) -> None:
    """Fail before training when LoRA would target modules the model does not have."""
    if target_modules == "all-linear":
        return
    have = linear_module_names(ref)
    missing = [m for m in target_modules if m not in have]
    if missing:
        raise InputError(
            f"target_modules {', '.join(missing)} not found in {ref}; "
            f"its linear layers are: {', '.join(sorted(have))} (or use all-linear)"
        )


def adapter_base_model(adapter_dir: str) -> str:
    """The base model the adapter was trained on, from the adapter's own training config."""
    cfg_path = Path(adapter_dir) / "training_config.json"
    if not cfg_path.exists():
        raise InputError(f"{adapter_dir} is not a fine-tune output (no training_config.json)")
    return json.loads(cfg_path.read_text())["base_model"]


def load_base_and_adapter(adapter_dir: str, base_ref: str = "") -> tuple[Any, Any]:
    """(PeftModel, tokenizer) with the tokenizer saved next to the adapter. The base comes from
    `base_ref` (the pipeline's fetched base model), else from the adapter's training config."""
    from peft import PeftModel

    # Loaded the way the adapter was trained (a QLoRA adapter on its 4-bit base).
    base = load_model(base_ref or adapter_base_model(adapter_dir), bf16=bf16_enabled("auto"),
                      quantization=adapter_quantization(adapter_dir))
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    return model, load_tokenizer(adapter_dir, padding_side="left")
