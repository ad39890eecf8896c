"""Two trained LoRA adapters compared relative to how far training moved them.

Why relative: runs that do the same training in another layout (two processes against one, FSDP
against DDP, a resumed run) differ in float summation order, which also varies with thread counts
and with the CPU's vector path (AVX2, AVX-512). Adam divides by sqrt(v), so ~1e-7 relative
rounding differences grow to 1e-6..1e-5 in the weights within a few steps: an absolute bound that
holds on one machine fails on another. Relative to the movement the gap is small everywhere
(measured for tests/unit/test_distributed.py's setup: 0.008% on one 2-core machine, 0.22% on
one with AVX-512 BF16), while a real data-parallel error is several percent or more (the
controls in that test).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

# max |a - b| / max |lora_B| may be this much for the same training in another layout: ~9x the
# largest gap measured, and 3.5x under the smallest real error shown (a halved gradient average).
ADAPTER_REL = 2e-2


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(Path(folder) / "adapter_model.safetensors")


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def movement(w: dict[str, torch.Tensor]) -> float:
    """How far training moved the adapter: LoRA's B matrices start at 0."""
    return max(t.abs().max().item() for k, t in w.items() if "lora_B" in k)


def relative_gap(a: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> float:
    """max |a - ref| as a fraction of how far training moved `ref`."""
    return max_diff(a, ref) / movement(ref)
