"""Memory of one GPU per step, by arithmetic: why a profile fits its GPU before anyone pays for it.

The byte counts of each term sit in the function that computes it; README "Bigger models" gives
the totals per profile. A profile fits when its total stays under 90% of the GPU's usable memory
(`HEADROOM`), the 10% being the estimate's own margin of error. `LOSS_GIB` (TRL's tiled LM head)
and `OVERHEAD_GIB` (CUDA context, workspaces, fragmentation) are assumptions until
`benchmarks/gpu_lora.py` measures them on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.common.memory import (
    activation_per_token,
    generation_bytes,
    scoring_bytes,
)
from planning.gemma3 import GEMMA3, Arch
from planning.machines import G2_MACHINES, AcceleratorMachine

GIB = 2**30
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # codes + 8-bit block scales + fp32 scales of scales
LOSS_GIB = 1.0  # TRL's fused LM head scores the vocabulary in tiles, never the full logits
OVERHEAD_GIB = 1.5  # CUDA context, cuBLAS workspaces, allocator fragmentation
GPU_GIB = {"NVIDIA_L4": 22.5}  # usable of its 24 GB GDDR6
BF16 = 2
HEADROOM = 0.9
# The cheapest G2 type (8 vCPU per L4) for each number of L4s, fewest first.
G2_BY_GPUS = tuple(G2_MACHINES[t] for t in ("g2-standard-8", "g2-standard-24", "g2-standard-48",
                                            "g2-standard-96"))


@dataclass(frozen=True)
class Fit:
    """One GPU's memory for a profile, GiB (LoRA parameters in millions)."""

    weights: float
    lora_m: float
    lora_states: float
    activations: float
    total: float

    def rounded(self) -> Fit:
        return Fit(*(round(v, 2) for v in (self.weights, self.lora_m, self.lora_states,
                                          self.activations, self.total)))


def weight_bytes(arch: Arch, quantization: str) -> float:
    """The base as training holds it: bf16, 2 bytes/param; or NF4 (QLoRA, double quantization) on
    every Linear, the vision tower's too, with the rest cast to fp32 by PEFT's k-bit preparation."""
    if quantization == "none":
        return arch.params * 2.0
    linear = arch.text.linear_params + (arch.vision.linear_params if arch.vision else 0)
    return linear * NF4_BYTES + (arch.params - linear) * 4.0


def activation_bytes(arch: Arch, tokens: int, quantization: str) -> float:
    """Gradient checkpointing keeps one hidden state per layer (fp32 with QLoRA, whose residual
    stream stays fp32 after the embedding's cast), plus the one layer recomputed in the backward
    pass; packed rows fill every sequence, so `tokens` = batch x max_seq_len."""
    t = arch.text
    checkpoints = t.layers * tokens * t.hidden * (4 if quantization == "nf4" else 2)
    return checkpoints + tokens * activation_per_token(t) * 2


def plan(base_model: str, quantization: str, lora_r: int, batch: int, seq_len: int,
         world: int = 1, fsdp: bool = False) -> Fit:
    """One GPU of a profile: weights + LoRA states + activations + loss + overhead. LoRA keeps
    weights, gradients and AdamW's two moments: 16 bytes/param in fp32 (PEFT keeps bf16 LoRA's
    adapters in fp32), 8 in bf16 (TRL casts a QLoRA adapter to bf16). FSDP divides the base by
    the world size and adds two whole layers in bf16: the one gathered, the next prefetched."""
    arch = GEMMA3[base_model]
    shards = world if fsdp else 1
    lora = arch.text.lora_params(lora_r)
    state_bytes = 8 if quantization == "nf4" else 16
    weights = weight_bytes(arch, quantization) / shards / GIB
    if fsdp:
        weights += 2 * (arch.text.linear_params / arch.text.layers) * 2 / GIB
    states = lora * state_bytes / shards / GIB
    acts = activation_bytes(arch, batch * seq_len, quantization) / GIB
    total = weights + states + acts + LOSS_GIB + OVERHEAD_GIB
    return Fit(weights, lora / 1e6, states, acts, total)


def budget(accelerator_type: str) -> float:
    """GiB a profile may plan to use on one GPU of this type."""
    return GPU_GIB[accelerator_type] * HEADROOM


def serving_weights_gib(arch: Arch, quantization: str, lora_r: int) -> float:
    """The base as evaluation and inference load it (bf16, or NF4 like its adapter) plus the
    adapter in fp32."""
    if quantization == "none":
        weights = arch.params * BF16
    else:  # no k-bit preparation here: what is not a Linear stays in bf16
        linear = arch.text.linear_params + (arch.vision.linear_params if arch.vision else 0)
        weights = linear * NF4_BYTES + (arch.params - linear) * BF16
    return (weights + arch.text.lora_params(lora_r) * 4) / GIB


def evaluate_gib(base_model: str, quantization: str, lora_r: int, batch: int, seq_len: int,
                 new_tokens: int, gpus: int = 1) -> float:
    """The evaluate step, per GPU: the heavier of scoring a batch of `seq_len`-token rows (every
    token a response token, the worst case for the LM head's tiles) and generating for it, plus
    the weights (spread over the machine's `gpus`, layer by layer, as `load_model` places a
    model on several) and the overhead above."""
    arch = GEMMA3[base_model]
    t = batch * seq_len
    score = scoring_bytes(arch.text, batch, seq_len, t, BF16, on_cpu=False)
    gen = generation_bytes(arch.text, batch, seq_len, new_tokens, BF16)
    weights = serving_weights_gib(arch, quantization, lora_r) / gpus
    return weights + max(score, gen) / GIB + OVERHEAD_GIB


def inference_gib(base_model: str, quantization: str, lora_r: int, batch: int, seq_len: int,
                  new_tokens: int, gpus: int = 1) -> float:
    """The inference step, per GPU: generation at the batch size, prompts up to `seq_len`."""
    arch = GEMMA3[base_model]
    gen = generation_bytes(arch.text, batch, seq_len, new_tokens, BF16)
    weights = serving_weights_gib(arch, quantization, lora_r) / gpus
    return weights + gen / GIB + OVERHEAD_GIB


def gpu_steps_gib(params: dict, world: int = 1, gpus: int = 1) -> dict[str, float] | None:
    """Expected peak GiB per GPU of every GPU step for these pipeline parameters, with `world`
    training processes on a machine of `gpus` GPUs (None for a base model whose architecture is
    not in planning/gemma3.py)."""
    base = params["base_model"]
    if base not in GEMMA3:
        return None
    q, r, seq = params["quantization"], params["lora_r"], params["max_seq_len"]
    batch, new = params["generation_batch_size"], params["max_new_tokens"]
    fit = plan(base, q, r, params["per_device_train_batch_size"], seq, world,
               fsdp=params.get("distributed") == "fsdp")
    return {"fine-tune": fit.total, "evaluate": evaluate_gib(base, q, r, batch, seq, new, gpus),
            "inference": inference_gib(base, q, r, batch, seq, new, gpus)}


def generation_machine(params: dict, training: AcceleratorMachine) -> AcceleratorMachine:
    """The machine evaluate and inference run on: the training machine when it has one GPU;
    otherwise the G2 type with the fewest L4s whose GPUs hold both steps by the arithmetic above
    (a several-GPU training machine would leave all but GPU 0 idle, and the two steps run in
    parallel). A model the arithmetic does not size keeps the training machine."""
    if training.accelerator_count == 1 or params["base_model"] not in GEMMA3 \
            or training.accelerator_type not in GPU_GIB:
        return training
    for machine in G2_BY_GPUS:
        if machine.accelerator_type != training.accelerator_type:
            continue
        steps = gpu_steps_gib(params, 1, machine.accelerator_count) or {}
        if max(steps["evaluate"], steps["inference"]) <= budget(machine.accelerator_type):
            return machine
    return training


def serving_gib(base_model: str, gpus: int = 1) -> float:
    """One GPU of an endpoint serving the merged model in bf16: its weights (spread over `gpus`
    by tensor parallelism), the overhead, and at least a quarter of the GPU left for vLLM's KV
    cache (below that it serves a handful of sequences)."""
    return GEMMA3[base_model].params * BF16 / GIB / gpus + OVERHEAD_GIB


def serving_machine(params: dict, default: AcceleratorMachine) -> AcceleratorMachine:
    """The endpoint's machine: the G2 type with the fewest L4s that holds the merged bf16 model
    with room for its KV cache (`default` for a model the arithmetic does not size)."""
    if params["base_model"] not in GEMMA3:
        return default
    for machine in G2_BY_GPUS:
        gpus = machine.accelerator_count
        if serving_gib(params["base_model"], gpus) <= 0.75 * GPU_GIB[machine.accelerator_type]:
            return machine
    raise ValueError(f"{params['base_model']} fits no G2 machine for serving")


def export_gib(base_model: str) -> float:
    """The export step's host memory: the base and the merged copy in fp32 at once (the merge
    and its check run in fp32 on CPU), the adapter, and 2 GiB for Python and the tokenizer."""
    arch = GEMMA3[base_model]
    return (2 * arch.params * 4 + arch.text.lora_params(64) * 4) / GIB + 2.0


def export_memory(params: dict, default_gb: int = 32) -> tuple[str, str]:
    """(cpu, memory) of the export step's CPU machine: `export_gib` with a 20% margin, rounded
    up to 8 GB, at least `default_gb`, with a vCPU per 8 GB (a high-memory shape)."""
    import math

    if params["base_model"] not in GEMMA3:
        return "8", f"{default_gb}G"
    gb = max(default_gb, math.ceil(export_gib(params["base_model"]) * GIB / 1e9 * 1.2 / 8) * 8)
    return str(max(8, gb // 8)), f"{gb}G"
