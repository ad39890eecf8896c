"""Parameter checks that must stop a run before any machine starts."""

import pytest

from components.common.config import PipelineConfig, build, parameter_defaults
from components.common.errors import InputError
from components.common.modeling import check_target_modules, linear_module_names
from pipelines.settings import parse_pairs as parse_overrides
from pipelines.settings import resolve
from planning.profiles import LOCAL_PROFILE, PROFILES

EMBEDDED_DEFAULT = PROFILES[LOCAL_PROFILE].params


def resolve_parameters(profile, pairs):
    """Defaults < the profile whose params are `profile` < --param pairs."""
    [name] = [n for n, p in PROFILES.items() if p.params == profile]
    return resolve(profile=name, param_pairs=pairs, env={}).params


def local_parameters(real_defaults, pairs, run_id):
    r = resolve(default_profile="default" if real_defaults else LOCAL_PROFILE,
                params={"run_name": run_id}, param_pairs=pairs, env={})
    return r.params, r.real_defaults_used


def test_defaults_are_the_real_job():
    d = parameter_defaults()
    assert d["base_model"] == "google/gemma-3-1b-it"
    assert d["dataset"] == "databricks/databricks-dolly-15k"
    assert set(EMBEDDED_DEFAULT) <= set(d)


def test_overrides_are_typed_from_the_config():
    params = resolve_parameters(EMBEDDED_DEFAULT, ["max_steps=20", "learning_rate=1e-3"])
    assert params["max_steps"] == 20 and params["learning_rate"] == 1e-3


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["lora_r=0"], "LoRA rank must be a positive integer"),
        (["lora_rank=8"], "unknown pipeline parameter 'lora_rank'; did you mean lora_r"),
        (["max_steps=abc"], "max_steps: Input should be a valid integer"),
        (["val_fraction=0.6", "test_fraction=0.5"], "leaves nothing to train on"),
        (["max_steps"], "is not name=value"),
    ],
)
def test_bad_parameters_get_one_line_errors(pairs, expected):
    with pytest.raises(InputError) as exc:
        resolve_parameters(EMBEDDED_DEFAULT, pairs)
    assert expected in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_names_are_rejected_even_in_code():
    with pytest.raises(InputError):
        build(PipelineConfig, {"nonsense": 1} | {"lora_r": -1})
    assert parse_overrides(["system_prompt=a=b"]) == {"system_prompt": "a=b"}


def test_target_modules_checked_against_the_model(tiny_model_ref):
    names = linear_module_names(tiny_model_ref)
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= names
    check_target_modules(tiny_model_ref, ["q_proj", "v_proj"])
    check_target_modules(tiny_model_ref, "all-linear")
    with pytest.raises(InputError, match="query_key_value not found"):
        check_target_modules(tiny_model_ref, ["q_proj", "query_key_value"])


def test_max_steps_zero_is_refused_with_the_two_meanings_it_could_have():
    with pytest.raises(InputError) as exc:
        resolve_parameters(EMBEDDED_DEFAULT, ["max_steps=0"])
    assert "max_steps=0 would train nothing" in str(exc.value) and "-1" in str(exc.value)
    assert resolve_parameters(EMBEDDED_DEFAULT, ["max_steps=-1"])["max_steps"] == -1


def test_mis_cased_categories_are_normalised_to_dollys():
    params = resolve_parameters(EMBEDDED_DEFAULT, ["categories=Closed_QA, open-qa"])
    assert params["categories"] == "closed_qa,open_qa"


def test_a_real_base_model_locally_gets_the_real_defaults_not_the_tiny_ones():
    tiny, none = local_parameters(False, [], "r")
    assert tiny["learning_rate"] == 3e-3 and none == {}
    real, used = local_parameters(False, ["base_model=org/real-model", "max_new_tokens=64"], "r")
    d = parameter_defaults()
    assert real["learning_rate"] == d["learning_rate"] == 2e-4
    assert real["max_seq_len"] == d["max_seq_len"] and real["gradient_accumulation_steps"] == 2
    assert real["max_new_tokens"] == 64  # what the user gave wins, and is not reported as used
    assert "max_new_tokens" not in used and used["learning_rate"] == 2e-4
    # data and run length stay those of the embedded default (offline, minutes)
    assert real["dataset"] == EMBEDDED_DEFAULT["dataset"] and real["max_steps"] == 60
    assert real["run_name"] == "r"
