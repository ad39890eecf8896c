"""Profiles: the memory arithmetic beside each row is right, each fits its GPU, and each compiles
to a template that asks for the machine and accelerator count it claims."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from components.common.config import parameter_defaults
from components.common.errors import InputError
from pipelines.machines import GPU_STEPS, Capacity
from pipelines.settings import CompileSettings, resolve
from planning import throughput
from planning.gemma3 import GEMMA3
from planning.memory import budget, generation_machine, plan
from planning.prices import hourly_price
from planning.profiles import GPU_PROFILES as PROFILES
from planning.throughput import THROUGHPUT

# keras-team/keras-hub gemma3_presets.py, text-only models (vocabulary 262,144).
KERAS_HUB_TEXT_PARAMS = {
    "google/gemma-3-1b-it": 999_885_952,
    "google/gemma-3-4b-it": 3_880_099_328,
    "google/gemma-3-12b-it": 11_765_788_416,
}


@pytest.mark.parametrize("model", list(GEMMA3))
def test_the_architecture_table_gives_the_published_parameter_counts(model):
    text = dataclasses.replace(GEMMA3[model].text, vocab=262_144)
    assert text.params == KERAS_HUB_TEXT_PARAMS[model]


def test_vision_language_checkpoints_count_their_tower_and_image_tokens():
    # 4.30B and 12.19B: the sizes Hugging Face lists for gemma-3-4b-it / gemma-3-12b-it.
    assert GEMMA3["google/gemma-3-4b-it"].params == 4_300_079_472
    assert GEMMA3["google/gemma-3-12b-it"].params == 12_187_325_040
    assert GEMMA3["google/gemma-3-1b-it"].vision is None


def test_lora_parameter_count_matches_peft_on_a_real_architecture():
    """The LoRA arithmetic against PEFT itself, on the Gemma 3 1B architecture (meta device)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    t = GEMMA3["google/gemma-3-1b-it"].text
    config = Gemma3TextConfig(
        vocab_size=t.vocab, hidden_size=t.hidden, intermediate_size=t.intermediate,
        num_hidden_layers=t.layers, num_attention_heads=t.heads, num_key_value_heads=t.kv_heads,
        head_dim=t.head_dim)
    with torch.device("meta"):
        model = Gemma3ForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == t.params
    peft = get_peft_model(model, LoraConfig(r=16, target_modules="all-linear"))
    assert sum(p.numel() for p in peft.parameters() if p.requires_grad) == t.lora_params(16)


@pytest.mark.parametrize("name", list(PROFILES))
def test_memory_beside_each_profile_is_the_arithmetic_and_fits(name):
    p = PROFILES[name]
    fit = plan(p.params["base_model"], p.params["quantization"], p.params["lora_r"],
               p.params["per_device_train_batch_size"], p.params["max_seq_len"], p.processes,
               fsdp=p.params["distributed"] == "fsdp").rounded()
    assert fit == p.fit, f"{name}: the table says {p.fit}, the arithmetic {fit}"
    assert p.fit.total <= budget(p.accelerator_type)
    assert p.global_batch == 16 == (parameter_defaults()["per_device_train_batch_size"]
                                    * parameter_defaults()["gradient_accumulation_steps"])


def test_what_does_not_fit_is_why_the_big_profiles_quantize_or_shard():
    """12B in bf16 on one L4 is over budget; NF4 on one L4 or FSDP over four is under it."""
    assert plan("google/gemma-3-12b-it", "none", 16, 2, 1024).total > budget("NVIDIA_L4")
    assert PROFILES["12b-qlora"].fit.total < budget("NVIDIA_L4")
    assert PROFILES["12b-lora-fsdp-4xl4"].fit.total < budget("NVIDIA_L4")


def test_the_default_profile_is_the_config_default():
    defaults = parameter_defaults()
    assert {k: defaults[k] for k in PROFILES["default"].params} == PROFILES["default"].params
    assert defaults["gpu_hourly_usd"] == hourly_price("g2-standard-8", "STANDARD")
    assert CompileSettings().training == CompileSettings(profile="default").training


@pytest.mark.parametrize("key", list(THROUGHPUT))
def test_each_throughput_figure_is_marked_and_estimates_are_the_arithmetic(key):
    t, p = THROUGHPUT[key], PROFILES[key[0]]
    assert t.basis.startswith(("measured", "estimated"))
    if t.basis.startswith("estimated"):
        q = p.params["quantization"]
        train = throughput.train_tokens_per_s(p.params["base_model"], q, key[1], p.processes,
                                              p.params["distributed"])
        gen = throughput.generate_tokens_per_s(p.params["base_model"], q, key[1], 16)
        assert (t.train_tokens_per_s, t.generate_tokens_per_s) == (round(train), round(gen))
    assert key[1] == p.accelerator_type


def test_prices_by_capacity():
    assert hourly_price("g2-standard-8", Capacity.STANDARD) == 0.85362
    assert hourly_price("g2-standard-8", "SPOT") == 0.34057
    assert hourly_price("g2-standard-8", "FLEX_START") == 0.85362  # upper bound
    assert hourly_price("g2-standard-48", "STANDARD") == 4.00164  # 48 x 0.29358 / 8 + 4 x 0.56004
    assert hourly_price("a2-highgpu-1g", "STANDARD") is None


def test_profile_then_environment_then_flags():
    s = resolve(settings={"profile": "4b-lora-4xl4"}, env={}).settings
    assert (s.training.machine_type, s.training.accelerator_count) == ("g2-standard-48", 4)
    assert s.model_display_name == ""  # named at run time after the base model
    s = resolve(settings={"profile": "4b-lora-4xl4"},
                             env={"DOLLY_LORA_MACHINE_TYPE": "g2-standard-96",
                                  "DOLLY_LORA_ACCELERATOR_COUNT": "8"}).settings
    assert (s.training.machine_type, s.training.accelerator_count) == ("g2-standard-96", 8)
    s = resolve(settings={"machine_type": "g2-standard-24", "accelerator_count": 2},
                             env={"DOLLY_LORA_PROFILE": "4b-lora-4xl4",
                                  "DOLLY_LORA_MACHINE_TYPE": "g2-standard-96"}).settings
    assert s.profile == "4b-lora-4xl4" and s.training.machine_type == "g2-standard-24"
    # A template compiled for one profile does not lend its machine to another.
    old = resolve(settings={"profile": "4b-lora-4xl4", "image": "r.io/p/i:1"}, env={}).settings.flat()
    s = resolve(settings={"profile": "12b-qlora"}, env={}, base=old).settings
    assert s.training.machine_type == "g2-standard-8" and s.image == "r.io/p/i:1"
    with pytest.raises(InputError, match="unknown profile 'huge'; choose from default"):
        resolve(settings={"profile": "huge"}, env={})


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from pipelines.compiler import compile_pipeline, read_stamp

    out = {}
    for name in PROFILES:
        path = compile_pipeline(tmp_path_factory.mktemp(name) / "t.yaml",
                                resolve(settings={"profile": name}, env={}).settings)
        out[name] = (yaml.safe_load(path.read_text()), read_stamp(path))
    return out


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_compiles_to_the_machine_and_parameters_it_claims(compiled, name):
    spec, stamp = compiled[name]
    p = PROFILES[name]
    pools = {}
    for comp in spec["components"].values():
        params = comp.get("inputDefinitions", {}).get("parameters", {})
        if "worker_pool_specs" in params:
            [pool] = params["worker_pool_specs"]["defaultValue"]
            pools[params["display_name"]["defaultValue"]] = pool
    assert set(pools) == set(GPU_STEPS)
    gen = generation_machine(resolve(profile=name, env={}).params, p.machine)
    for step, pool in pools.items():
        assert pool["replica_count"] == 1  # one machine; its GPUs are the processes
        m = p.machine if step == "fine-tune" else gen
        assert pool["machine_spec"] == m.machine_spec()
    # every GPU job has its own deadline from the estimate, far below the old 24 h
    timeouts = {k: float(v.rstrip("s")) for k, v in stamp["settings"]["step_timeouts"].items()}
    assert set(timeouts) == set(GPU_STEPS) and max(timeouts.values()) < 8 * 3600
    for comp in spec["components"].values():
        params = comp.get("inputDefinitions", {}).get("parameters", {})
        if "worker_pool_specs" in params:
            step = params["display_name"]["defaultValue"]
            assert params["timeout"]["defaultValue"] == f"{timeouts[step]:.0f}s"
    defaults = {k: v.get("defaultValue")
                for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    for key, value in p.params.items():
        assert defaults[key] == value, key
    assert defaults["gpu_hourly_usd"] == hourly_price(p.machine_type, "STANDARD")
    assert stamp["settings"]["profile"] == name
    assert f"profile={name}" in spec["pipelineInfo"]["description"]
    assert json.dumps(stamp["settings"])  # what submit compares against


def test_a_4xl4_profile_evaluates_and_infers_on_one_gpu(compiled):
    spec, _ = compiled["4b-lora-4xl4"]
    machines = {}
    for comp in spec["components"].values():
        params = comp.get("inputDefinitions", {}).get("parameters", {})
        if "worker_pool_specs" in params:
            [pool] = params["worker_pool_specs"]["defaultValue"]
            machines[params["display_name"]["defaultValue"]] = pool["machine_spec"]
    assert machines["fine-tune"]["accelerator_count"] == 4
    assert machines["evaluate"] == machines["inference"] == {
        "machine_type": "g2-standard-8", "accelerator_type": "NVIDIA_L4", "accelerator_count": 1}


@pytest.mark.parametrize("name", list(PROFILES))
def test_export_and_serving_machines_hold_the_model_by_the_arithmetic(compiled, name):
    from pipelines.machines import export_machine, serving_machine
    from planning.gemma3 import GEMMA3
    from planning.memory import GIB, GPU_GIB, OVERHEAD_GIB

    params = resolve(profile=name, env={}).params
    arch = GEMMA3[params["base_model"]]
    # export merges in fp32 on CPU: base + merged copy, 4 bytes per parameter each
    export_gb = int(export_machine(params).memory.rstrip("G"))
    assert export_gb * 1e9 >= 2 * arch.params * 4 * 1.2
    # serving: bf16 weights over the endpoint's GPUs, overhead, a quarter left for the KV cache
    serve = serving_machine(params)
    per_gpu = arch.params * 2 / GIB / serve.accelerator_count + OVERHEAD_GIB
    assert per_gpu <= 0.75 * GPU_GIB[serve.accelerator_type]
    spec, _ = compiled[name]
    resources = spec["deploymentSpec"]["executors"]["exec-export"]["container"]["resources"]
    assert resources["resourceMemoryLimit"] == f"{export_gb}G"  # what Vertex gives the step
    deploy = [c for c in spec["components"].values()
              if "deploy-model" in c.get("dag", {}).get("tasks", {})]
    for comp in deploy:
        inputs = comp["dag"]["tasks"]["deploy-model"]["inputs"]["parameters"]
        assert inputs["machine_type"]["runtimeValue"]["constant"] == serve.machine_type
    # vLLM splits the model over exactly the serving machine's GPUs
    register = [c for c in spec["components"].values()
                if "register-model" in c.get("dag", {}).get("tasks", {})]
    assert register
    for comp in register:
        inputs = comp["dag"]["tasks"]["register-model"]["inputs"]["parameters"]
        assert inputs["serving_gpus"]["runtimeValue"]["constant"] == serve.accelerator_count
    if params["base_model"] == "google/gemma-3-12b-it":  # 24.4 GB of bf16 weights: 2 L4s
        assert serve.accelerator_count == 2 and export_gb >= 117


def test_the_readme_shows_the_profile_table_as_the_tables_are():
    from pathlib import Path

    from scripts.profile_table import table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "## Bigger models" in readme
    assert table() in readme, "regenerate it: uv run python scripts/profile_table.py"


def test_each_gpu_machine_is_described_once_and_training_serving_and_prices_read_it():
    from pipelines.machines import SERVING_MACHINE, STEP_MACHINES, TrainingJobSpec
    from planning.machines import G2_MACHINES, G2_STANDARD_8
    from planning.prices import price
    from planning.profiles import PROFILES as ALL_PROFILES

    assert SERVING_MACHINE is G2_STANDARD_8 is ALL_PROFILES["default"].machine
    assert all(p.machine is G2_MACHINES[p.machine_type] for p in ALL_PROFILES.values())
    job = TrainingJobSpec()
    assert {"machine_type": job.machine_type, "accelerator_type": job.accelerator_type,
            "accelerator_count": job.accelerator_count} == G2_STANDARD_8.machine_spec()
    gpu = STEP_MACHINES["fine-tune"]
    assert (gpu.cpu, gpu.memory, gpu.accelerator_type, gpu.accelerator_count) == (
        G2_STANDARD_8.cpu, G2_STANDARD_8.memory, "NVIDIA_L4", 1)
    assert all(price(machine, "STANDARD") for machine in G2_MACHINES)
    # The one price of the default machine: the table's, which the config's default repeats.
    assert parameter_defaults()["gpu_hourly_usd"] == hourly_price(SERVING_MACHINE.machine_type,
                                                                   "STANDARD")


def test_the_embedded_default_is_a_row_and_another_model_gets_the_real_defaults():
    from planning.profiles import LOCAL_PROFILE
    from planning.profiles import PROFILES as ALL_PROFILES

    row = ALL_PROFILES[LOCAL_PROFILE]
    assert row.params["base_model"] == "embedded://tiny-gemma3" and row.fit is None
    r = resolve(default_profile=LOCAL_PROFILE, param_pairs=["base_model=org/real"], env={})
    assert r.params["learning_rate"] == parameter_defaults()["learning_rate"]
    assert set(r.real_defaults_used) == set(row.model_settings)
    assert r.params["max_steps"] == row.params["max_steps"]


def test_precedence_defaults_profile_environment_flags_param():
    env = {"DOLLY_LORA_PROFILE": "4b-qlora", "DOLLY_LORA_CAPACITY": "SPOT"}
    r = resolve(env=env)
    assert r.profile.name == "4b-qlora" and r.params["quantization"] == "nf4"
    assert r.params["gpu_hourly_usd"] == hourly_price("g2-standard-8", "SPOT")
    r = resolve(profile="default", settings={"capacity": "STANDARD"},
                params={"max_steps": 7}, param_pairs=["max_steps=9"], env=env)
    assert r.profile.name == "default" and r.settings.training.capacity == "STANDARD"
    assert r.params["max_steps"] == 9 and r.overrides == {"max_steps": 9}
    assert r.asked == {"profile": "default", "capacity": "STANDARD"}
