"""Throughput by arithmetic, for profiles nobody has measured on a GPU yet.

Training is compute-bound (4N FLOPs per token, the usual MFU convention, as benchmarks/gpu_lora.py
counts); generation is memory-bound (each decoding step reads every weight once per batch). The
assumed MFU and multi-GPU scaling factors are constants below, each with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from planning.gemma3 import GEMMA3
from planning.memory import NF4_BYTES

PEAK_BF16 = {"NVIDIA_L4": 121e12}  # L4 datasheet: dense bf16 (242 with sparsity)
BANDWIDTH = {"NVIDIA_L4": 300e9}  # L4 datasheet: GDDR6
# HF Trainer + SDPA + packing + gradient checkpointing: a conservative L4 figure for bf16 LoRA;
# QLoRA dequantizes every 4-bit weight before its matmul.
MFU = {"none": 0.25, "nf4": 0.25 * 0.7}
# G2 machines have PCIe, no NVLink: DDP all-reduces only the LoRA gradients, FSDP all-gathers the
# bf16 base layer by layer, forward and backward.
SCALING = {"ddp": 0.9, "fsdp": 0.8}
DECODE_EFFICIENCY = 0.5  # share of the memory bandwidth a decoding step reaches


def train_tokens_per_s(base_model: str, quantization: str, accelerator: str, gpus: int,
                       distributed: str = "ddp") -> float:
    """MFU x peak x GPUs x scaling / 4N: forward 2N + input gradients 2N FLOPs per token, N the
    language model's parameters (LoRA's weight gradients and recomputation not counted)."""
    n = GEMMA3[base_model].text.params
    scale = SCALING[distributed] if gpus > 1 else 1.0
    return MFU[quantization] * PEAK_BF16[accelerator] * gpus * scale / (4 * n)


def generate_tokens_per_s(base_model: str, quantization: str, accelerator: str,
                          batch: int) -> float:
    arch = GEMMA3[base_model]
    if quantization == "nf4":
        linear = arch.text.linear_params + (arch.vision.linear_params if arch.vision else 0)
        weight_bytes = linear * NF4_BYTES + (arch.params - linear) * 2
    else:
        weight_bytes = arch.params * 2
    return batch * BANDWIDTH[accelerator] * DECODE_EFFICIENCY / weight_bytes


@dataclass(frozen=True)
class Throughput:
    """Training and generation speed of a profile on one machine of its kind (all its GPUs), the
    billed start of each GPU job, and where the numbers come from."""

    train_tokens_per_s: float
    generate_tokens_per_s: float  # at generation_batch_size 16
    startup_s: float  # image pull + reading (and quantizing) the weights, per GPU job
    basis: str  # "measured: where, when" or "estimated: the arithmetic"


_EST = ("estimated (planning/throughput.py): train = MFU {mfu} x 121 TFLOP/s x {gpus} GPU"
        "{scale} / (4 x {n}B params); generate = 16 x 300 GB/s x 0.5 / {wb} GB of weights; "
        "startup {startup:.0f} s assumed")
# Per (profile, GPU).
THROUGHPUT: dict[tuple[str, str], Throughput] = {
    ("default", "NVIDIA_L4"): Throughput(7563, 1200, 240, _EST.format(
        mfu=0.25, gpus=1, scale="", n="1.00", wb="2.00", startup=240)),
    ("4b-qlora", "NVIDIA_L4"): Throughput(1364, 743, 300, _EST.format(
        mfu=0.175, gpus=1, scale="", n="3.88", wb="3.23", startup=300)),
    ("12b-qlora", "NVIDIA_L4"): Throughput(450, 308, 420, _EST.format(
        mfu=0.175, gpus=1, scale="", n="11.77", wb="7.80", startup=420)),
    ("4b-lora-4xl4", "NVIDIA_L4"): Throughput(7016, 279, 300, _EST.format(
        mfu=0.25, gpus=4, scale=" x 0.9 (DDP)", n="3.88", wb="8.60", startup=300)),
    ("12b-lora-fsdp-4xl4", "NVIDIA_L4"): Throughput(2057, 98, 420, _EST.format(
        mfu=0.25, gpus=4, scale=" x 0.8 (FSDP)", n="11.77", wb="24.37", startup=420)),
}
