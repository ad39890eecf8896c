"""Profiles: model, machine, GPUs, precision, batch and sequence, chosen together, in one table.

`pipelines.settings.resolve` applies a row; every value still overrides it. Every GPU row keeps a
global batch of 16 sequences, so the learning rate means the same everywhere. The memory beside
each row comes from planning/memory.py; tests/unit/test_profiles.py recomputes every number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from components.common.errors import InputError
from planning.machines import G2_STANDARD_8, G2_STANDARD_48, AcceleratorMachine
from planning.memory import Fit


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    machine: AcceleratorMachine
    params: dict[str, Any]
    fit: Fit | None  # None: a model planning/gemma3.py does not size (the embedded one)
    # Settings that suit this row's base model only: with another --param base_model they fall
    # back to the defaults (`model_settings_for`).
    model_settings: tuple[str, ...] = field(default=())

    @property
    def machine_type(self) -> str:
        return self.machine.machine_type

    @property
    def accelerator_type(self) -> str:
        return self.machine.accelerator_type

    @property
    def accelerator_count(self) -> int:
        return self.machine.accelerator_count

    @property
    def processes(self) -> int:
        return self.params.get("num_processes") or self.accelerator_count

    @property
    def global_batch(self) -> int:
        p = self.params
        return p["per_device_train_batch_size"] * p["gradient_accumulation_steps"] * self.processes

    @property
    def settings(self) -> dict[str, Any]:
        """The compile settings it chooses: the GPU steps' machine. Not the registry model,
        which register-model names after the run's base model (a `--param base_model` must
        never make its adapter a version of the profile's model)."""
        return self.machine.machine_spec()

    def params_for(self, base_model: str | None) -> tuple[dict[str, Any], list[str]]:
        """(the row's parameters for a run of `base_model`, the model settings left out).

        With the row's own model (or none given) that is every parameter; with another, the
        settings tuned for the row's model are left out, so the defaults fill them."""
        if not base_model or base_model == self.params.get("base_model"):
            return dict(self.params), []
        kept = {k: v for k, v in self.params.items() if k not in self.model_settings}
        return kept, [k for k in self.model_settings if k in self.params]


EMBEDDED_MODEL = "embedded://tiny-gemma3"
_SEQ = {"max_seq_len": 1024, "lora_r": 16, "num_processes": 0}
PROFILES: dict[str, Profile] = {p.name: p for p in (
    # Gemma 3 1B, 999.9M params, bf16 LoRA, 1 x L4. weights 999.9M x 2 B = 1.86; LoRA 13.05M
    # x 16 B (fp32 weight, grad, Adam m and v) = 0.19; activations 8 x 1024 tokens = 1.30;
    # + loss 1.0 + overhead 1.5 = 5.86 of 20.25 GiB. The default job.
    Profile("default", "Gemma 3 1B, LoRA bf16, 1 x L4", G2_STANDARD_8,
            {"base_model": "google/gemma-3-1b-it", "quantization": "none", "distributed": "ddp",
             "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, **_SEQ},
            Fit(1.86, 13.05, 0.19, 1.30, 5.86)),
    # Gemma 3 4B (4.30B params with its vision tower), QLoRA, 1 x L4. weights: 3.62B Linear
    # weights x 0.5159 B (NF4 + double-quantized scales) + 0.68B others in fp32 x 4 B = 4.27;
    # LoRA 29.80M x 8 B (bf16) = 0.22; activations 4 x 1024 (fp32 residual) = 2.03; + 2.5
    # = 9.03 of 20.25 GiB (in bf16 the weights alone would be 8.01: it would fit too, see
    # 4b-lora-4xl4; QLoRA leaves room for longer sequences on one GPU).
    Profile("4b-qlora", "Gemma 3 4B, QLoRA (NF4), 1 x L4", G2_STANDARD_8,
            {"base_model": "google/gemma-3-4b-it", "quantization": "nf4", "distributed": "ddp",
             "per_device_train_batch_size": 4, "gradient_accumulation_steps": 4, **_SEQ},
            Fit(4.27, 29.80, 0.22, 2.03, 9.03)),
    # Gemma 3 12B (12.19B params), QLoRA, 1 x L4: the arithmetic needs no second GPU. weights:
    # 11.17B Linear x 0.5159 B + 1.02B others x 4 B (the 262k x 3840 embedding, fp32) = 9.16;
    # LoRA 65.47M x 8 B = 0.49; activations 2 x 1024 = 1.95; + 2.5 = 14.10 of 20.25 GiB
    # (in bf16: 22.70 GiB of weights, more than an L4 has; see 12b-lora-fsdp-4xl4).
    Profile("12b-qlora", "Gemma 3 12B, QLoRA (NF4), 1 x L4", G2_STANDARD_8,
            {"base_model": "google/gemma-3-12b-it", "quantization": "nf4", "distributed": "ddp",
             "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8, **_SEQ},
            Fit(9.16, 65.47, 0.49, 1.95, 14.10)),
    # Gemma 3 4B, bf16 LoRA, data-parallel over the 4 L4s of a g2-standard-48 (DDP: a whole
    # copy per GPU). weights 4.30B x 2 B = 8.01; LoRA 29.80M x 16 B = 0.44; activations
    # 4 x 1024 = 1.37; + 2.5 = 12.32 of 20.25 GiB per GPU. 4 x 4 x 1 = 16 per step.
    Profile("4b-lora-4xl4", "Gemma 3 4B, LoRA bf16, DDP on 4 x L4", G2_STANDARD_48,
            {"base_model": "google/gemma-3-4b-it", "quantization": "none", "distributed": "ddp",
             "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, **_SEQ},
            Fit(8.01, 29.80, 0.44, 1.37, 12.32)),
    # Gemma 3 12B, bf16 LoRA, FSDP over 4 x L4: 22.70 GiB of bf16 weights fit no single L4, so
    # they are sharded: 22.70 / 4 + 2 gathered layers (2 x 0.42) = 6.51; LoRA 65.47M x 16 B / 4
    # = 0.24; activations 2 x 1024 = 1.25; + 2.5 = 10.50 of 20.25 GiB per GPU. 2 x 2 x 4 = 16.
    Profile("12b-lora-fsdp-4xl4", "Gemma 3 12B, LoRA bf16, FSDP on 4 x L4", G2_STANDARD_48,
            {"base_model": "google/gemma-3-12b-it", "quantization": "none", "distributed": "fsdp",
             "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, **_SEQ},
            Fit(6.51, 65.47, 0.24, 1.25, 10.50)),

    # The embedded default: what `submit --local` runs with no cloud, GPU or network. A tiny
    # Gemma 3 and the shipped Dolly sample, sized so the whole DAG takes a few minutes on 2 CPU
    # cores. It shows the machinery; quality comes from the real model on a GPU.
    Profile("embedded", "tiny Gemma 3 + the shipped Dolly sample, minutes on a laptop's CPU",
            G2_STANDARD_8, {
                "base_model": EMBEDDED_MODEL,
                "dataset": "embedded://dolly-15k-sample.jsonl",
                "max_seq_len": 512,
                "val_fraction": 0.1,
                # 0.15 of the sample's ~210 usable rows is ~32 test rows: just above
                # gate_min_rows, so the demo's gate decides (and register-model runs) instead of
                # answering "not enough rows".
                "test_fraction": 0.15,
                "learning_rate": 3e-3,
                "warmup_ratio": 0.05,
                "max_steps": 60,
                "per_device_train_batch_size": 8,
                "gradient_accumulation_steps": 1,
                "logging_steps": 5,
                "eval_steps": 20,
                # With --checkpoint-uri: a checkpoint every 5 of the 60 steps (~0.2 s each), so a
                # run killed at any point past step 5 resumes instead of starting over.
                "save_steps": 5,
                "max_new_tokens": 48,
            }, None,
            # A learning rate 15x the real one, short sequences and answers, no gradient
            # accumulation: with another base_model they would silently mistune it (measured on
            # a real 268M Gemma 3: first-step grad norm 46.8 vs 3.4).
            model_settings=("max_seq_len", "learning_rate", "warmup_ratio",
                            "per_device_train_batch_size", "gradient_accumulation_steps",
                            "max_new_tokens")),
)}
DEFAULT_PROFILE = "default"  # compile, Vertex, KFP: the real job
LOCAL_PROFILE = "embedded"  # submit --local without --profile or --real-defaults
# The profiles the memory arithmetic sizes for a GPU (all but the embedded one).
GPU_PROFILES: dict[str, Profile] = {n: p for n, p in PROFILES.items() if p.fit is not None}


def profile_named(name: str) -> Profile:
    """The row called `name`; the one place an unknown name is refused."""
    if name not in PROFILES:
        raise InputError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    return PROFILES[name]
