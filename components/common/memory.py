"""Memory of the steps that run the model, by arithmetic, and each step's measured peak.

Why: with Gemma 3's 262,144-token vocabulary the LM head, not the weights, decides whether a step
fits (full logits of 16 x 1,024 tokens: 48 GiB). So every step scores the vocabulary in tiles, and
the same formulas size profiles before a run (`planning/memory.py`, `submit --dry-run`) and bound
the real-size tests. Bytes throughout; `d` is the compute dtype's size (4 on CPU, 2 in bf16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 2**30
# The LM head in tiles: trl.kernels.ChunkedLogProbFunction projects TOKEN_TILE tokens against
# VOCAB_TILE vocabulary rows at a time (trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE = 4096).
TOKEN_TILE = 4096
VOCAB_TILE = 8192  # what evaluation passes; TRL's trainer passes 32768
TRAINER_VOCAB_TILE = 32768
# On CPU the fine-tune step narrows the trainer's tiles to this (trl.trainer.utils'
# _CHUNKED_LOGPROB_CHUNK_SIZE): the backward's nine fp32 temporaries of a 4,096 x 32,768 tile are
# 5 GiB of host memory; at 8,192 rows 1.3 GiB, for the same arithmetic.
CPU_TRAINER_VOCAB_TILE = 8192
# Full logits: the logits (fp32 on CPU, upcast from bf16 on GPU), a log-softmax and its
# gradient (or, without gradients, cross-entropy's own copy): ~12 bytes a token a vocabulary row.
FULL_LOGITS_BYTES = 12


@dataclass(frozen=True)
class ModelShape:
    """What the arithmetic needs of a decoder-only model (planning.gemma3.Text is one)."""

    hidden: int
    layers: int
    vocab: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, config: Any) -> ModelShape:
        """From a transformers config (a multimodal one's text config)."""
        c = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = c.num_attention_heads
        return cls(hidden=c.hidden_size, layers=c.num_hidden_layers, vocab=c.vocab_size,
                   intermediate=c.intermediate_size, heads=heads,
                   kv_heads=getattr(c, "num_key_value_heads", None) or heads,
                   head_dim=getattr(c, "head_dim", None) or c.hidden_size // heads)


def loading_bytes(params: int, d: int, checkpoint_bytes: int) -> int:
    """Loading a model: its weights in the compute dtype, while the checkpoint's pages are
    still mapped (safetensors reads the file through mmap)."""
    return params * d + checkpoint_bytes


def linear_shapes(m: ModelShape) -> dict[str, tuple[int, int]]:
    """(in, out) of each Linear in one decoder layer: what LoRA 'all-linear' targets and what
    bitsandbytes quantizes."""
    h, q, kv, i = m.hidden, m.heads * m.head_dim, m.kv_heads * m.head_dim, m.intermediate
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def lora_params(m: ModelShape, rank: int) -> int:
    """LoRA on every Linear of every layer: A is r x in, B is out x r."""
    return m.layers * rank * sum(a + b for a, b in linear_shapes(m).values())


def full_logits_bytes(tokens: int, vocab: int) -> int:
    return tokens * vocab * FULL_LOGITS_BYTES


# fp32 tile-sized temporaries where the tiles are folded with torch ops (CPU; Triton keeps
# them in registers): scoring's forward holds the scaled logits, their shift and its exp; the
# trainer's backward the scaled logits, log-probabilities, probabilities, the gradient and the
# three terms that make it (trl/kernels/chunked_logprob.py, `_forward_tile`, `_backward_tile`).
SCORING_TEMPORARIES = 3
TRAINING_TEMPORARIES = 9


def head_tile_bytes(tokens: int, vocab: int, d: int, on_cpu: bool,
                    vocab_tile: int = VOCAB_TILE, temporaries: int = SCORING_TEMPORARIES) -> int:
    """One tile of the chunked LM head: the projection in the compute dtype and, on CPU, its
    fp32 temporaries."""
    tile = min(tokens, TOKEN_TILE) * min(vocab, vocab_tile)
    return tile * (d + (4 * temporaries if on_cpu else 0))


def layer_transient_bytes(m: ModelShape, batch: int, width: int, d: int) -> int:
    """The biggest set of tensors alive at once inside one decoder layer, no gradients."""
    t = batch * width
    mlp = 3 * t * m.intermediate
    attention = 2 * batch * m.heads * width * width + t * (m.heads + 2 * m.heads) * m.head_dim
    return (max(mlp, attention) + 4 * t * m.hidden) * d


def scoring_bytes(m: ModelShape, batch: int, width: int, response_tokens: int, d: int,
                  on_cpu: bool) -> int:
    """Response-token losses of one batch (`generation.response_losses`), beyond the weights:
    the forward's largest layer transient, the last hidden states, the response positions'
    hidden states and one head tile."""
    hidden_states = batch * width * m.hidden * d
    picked = response_tokens * m.hidden * d
    return (layer_transient_bytes(m, batch, width, d) + hidden_states + picked
            + head_tile_bytes(response_tokens, m.vocab, d, on_cpu))


def kv_cache_bytes(m: ModelShape, batch: int, tokens: int, d: int) -> int:
    """Keys and values of every layer for `tokens` positions (an upper bound: Gemma 3's sliding
    layers keep only their window)."""
    return m.layers * 2 * batch * tokens * m.kv_heads * m.head_dim * d


def generation_bytes(m: ModelShape, batch: int, prompt: int, new_tokens: int, d: int) -> int:
    """`generate()` of one batch, beyond the weights: the KV cache at full length, the prefill's
    largest layer transient, and the last position's logits with the sampler's fp32 copies."""
    return (kv_cache_bytes(m, batch, prompt + new_tokens, d)
            + layer_transient_bytes(m, batch, prompt, d)
            + batch * prompt * m.hidden * d
            + batch * m.vocab * (d + 3 * 4))


def activation_per_token(m: ModelShape) -> int:
    """Elements one decoder layer keeps (or recomputes) per token for the backward pass: the MLP
    gate/up/activation/product and their gradients, attention projections, norms."""
    return (6 * m.intermediate + 4 * m.heads * m.head_dim + 2 * m.kv_heads * m.head_dim
            + 8 * m.hidden)


def trainer_vocab_tile(on_cpu: bool) -> int:
    return CPU_TRAINER_VOCAB_TILE if on_cpu else TRAINER_VOCAB_TILE


def training_bytes(m: ModelShape, batch: int, width: int, d: int, fused_head: bool,
                   checkpointing: bool, on_cpu: bool) -> int:
    """One training step, beyond weights and optimizer states: activations (every layer's,
    or with gradient checkpointing one hidden state per layer plus the layer recomputed), the
    attention scores each layer keeps, and the loss (full logits, or TRL's fused head: a tile
    and the hidden states' gradient)."""
    t = batch * width
    per_layer = t * activation_per_token(m) * d + 2 * batch * m.heads * width * width * d
    acts = m.layers * t * m.hidden * d + per_layer if checkpointing else m.layers * per_layer
    tile = head_tile_bytes(t, m.vocab, d, on_cpu, trainer_vocab_tile(on_cpu),
                           TRAINING_TEMPORARIES)
    loss = tile + 2 * t * m.hidden * 4 if fused_head else full_logits_bytes(t, m.vocab)
    return acts + loss


def use_fused_head(batch: int, width: int, vocab: int, d: int, on_cpu: bool) -> bool:
    """TRL's fused LM head unless the full logits are smaller than its tiles (a small
    vocabulary: the tiny model), where the plain loss is as small and a quarter faster on CPU."""
    fused = head_tile_bytes(batch * width, vocab, d, on_cpu, trainer_vocab_tile(on_cpu),
                            TRAINING_TEMPORARIES)
    return full_logits_bytes(batch * width, vocab) > fused


@dataclass(frozen=True)
class TrainingPlan:
    """How a training step keeps within memory: TRL's fused head or the plain loss, and whether
    activations are recomputed (gradient checkpointing)."""

    fused_head: bool
    checkpointing: bool


def training_plan(m: ModelShape, batch: int, width: int, d: int, on_cpu: bool,
                  memory_bytes: int) -> TrainingPlan:
    """On a GPU: checkpointing always (activations, not time, are what runs out there). On CPU:
    only when a step's activations and loss would take more than half of `memory_bytes`, the
    machine's memory (a real model's 18 layers at 8 x 1,024 tokens: about 20 GiB), since
    recomputing costs about a third of each step."""
    fused = use_fused_head(batch, width, m.vocab, d, on_cpu)
    heavy = training_bytes(m, batch, width, d, fused, checkpointing=False, on_cpu=on_cpu)
    return TrainingPlan(fused_head=fused, checkpointing=not on_cpu or heavy > memory_bytes / 2)


def host_memory_bytes() -> int:
    """This machine's memory, or its container's limit where that is lower (cgroup v2 or v1)."""
    import os

    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


# ------------------------------------------------------------------------ measured


def peak_memory() -> dict[str, float]:
    """This process's peak memory so far, MiB: resident set (and its children's, e.g. the
    training ranks) and, where CUDA was used, the most the allocator held.

    Why both: on CPU the kernel's OOM killer acts on resident memory; on a GPU what runs out is
    device memory, which `torch.cuda.max_memory_allocated` measures."""
    import resource
    import sys

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out = {"peak_rss_mb": round(max(own, children), 1)}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_allocated_mb"] = round(
            max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
            / 2**20, 1)
    return out
