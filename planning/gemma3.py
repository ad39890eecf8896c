"""Gemma 3 architectures, written down: no hub access is needed to size a profile.

Sources: transformers' `models/gemma3/convert_gemma3_weights.py` (`_VARIANTS`, `_VISION_CONFIG`,
commit 0d7e95d) for the shapes, and keras-hub's `gemma3_presets.py` for the text models' parameter
counts, which tests/unit/test_profiles.py checks `text_params` against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.common.memory import ModelShape, linear_shapes, lora_params


@dataclass(frozen=True)
class Text(ModelShape):
    head_dim: int = 256

    @property
    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        return linear_shapes(self)

    @property
    def linear_params(self) -> int:
        """Weights of every decoder layer's Linear layers (no biases in Gemma)."""
        return self.layers * sum(a * b for a, b in self.linear_shapes.values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden  # tied: the same matrix is the LM head

    @property
    def norm_params(self) -> int:
        """4 RMSNorms per layer, q/k norms over head_dim, the final norm."""
        return self.layers * (4 * self.hidden + 2 * self.head_dim) + self.hidden

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params + self.norm_params

    def lora_params(self, rank: int) -> int:
        return lora_params(self, rank)


@dataclass(frozen=True)
class Vision:
    """SigLIP encoder (so400m shape) + Gemma 3's multimodal projector."""

    hidden: int = 1152
    intermediate: int = 4304
    layers: int = 27
    image: int = 896
    patch: int = 14

    @property
    def linear_params(self) -> int:
        h, i = self.hidden, self.intermediate
        return self.layers * (4 * h * h + 2 * h * i)  # q, k, v, out; fc1, fc2

    def other_params(self, text_hidden: int) -> int:
        """Biases, layer norms, patch and position embeddings, the projector (not Linear
        layers, so never quantized)."""
        h, i = self.hidden, self.intermediate
        biases_norms = self.layers * (4 * h + i + h + 4 * h)
        embeddings = 3 * self.patch**2 * h + h + (self.image // self.patch) ** 2 * h
        return biases_norms + embeddings + 2 * h + h * text_hidden + h


@dataclass(frozen=True)
class Arch:
    text: Text
    vision: Vision | None = None

    @property
    def params(self) -> int:
        extra = (self.vision.linear_params + self.vision.other_params(self.text.hidden)
                 if self.vision else 0)
        return self.text.params + extra


SIGLIP = Vision()
GEMMA3: dict[str, Arch] = {
    "google/gemma-3-1b-it": Arch(Text(hidden=1152, layers=26, vocab=262_144, intermediate=6912,
                                      heads=4, kv_heads=1)),
    "google/gemma-3-4b-it": Arch(Text(hidden=2560, layers=34, vocab=262_208, intermediate=10240,
                                      heads=8, kv_heads=4), SIGLIP),
    "google/gemma-3-12b-it": Arch(Text(hidden=3840, layers=48, vocab=262_208, intermediate=15360,
                                       heads=16, kv_heads=8), SIGLIP),
}


def text_config(base_model: str, layers: int | None = None, **overrides: Any) -> Any:
    """The checkpoint's text config as transformers builds it (sliding window 512 for 1B, 1024
    above; every sixth layer global), with `layers` decoder layers if given: what the GPU
    benchmark and the real-size tests build a random-weight Gemma 3 from."""
    from transformers import Gemma3TextConfig

    t = GEMMA3[base_model].text
    n = layers or t.layers
    return Gemma3TextConfig(**{
        "vocab_size": t.vocab, "hidden_size": t.hidden, "intermediate_size": t.intermediate,
        "num_hidden_layers": n, "num_attention_heads": t.heads, "num_key_value_heads": t.kv_heads,
        "head_dim": t.head_dim, "sliding_window": 512 if t.hidden < 2000 else 1024,
        "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                        for i in range(n)],
        "max_position_embeddings": 32768, "query_pre_attn_scalar": t.head_dim,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": True, **overrides,
    })
