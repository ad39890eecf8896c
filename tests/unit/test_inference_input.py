"""Bad prompt files and generation settings fail clearly, before any model is loaded."""

from __future__ import annotations

import pytest

from components.common.errors import InputError
from components.inference import infer


@pytest.fixture
def no_model(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(infer, "infer", boom)


@pytest.fixture
def test_split(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"instruction": "Say hi", "context": ""}\n')
    return path


def run(tmp_path, test_split, params):
    """Inference as its component runs it: the config built from the task's parameters."""
    from types import SimpleNamespace

    from components.common.step import StepIO, call

    arts = {"base": "b", "test": str(test_split), "model": "adapter",
            "predictions": str(tmp_path / "job" / "inference" / "predictions")}
    arts = {k: SimpleNamespace(path=v, metadata={}) for k, v in arts.items()}
    io = StepIO(inputs={k: arts[k] for k in ("base", "test", "model")},
                outputs={"predictions": arts["predictions"]}, run_id_from="predictions")
    return call(infer.run_inference, {**arts, **params, "required_accelerator": ""}, io)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("prompt,answer\nhi,there\n", "line 1 is not JSON"),
        ('{"prompt": "ok"}\n{"question": "where is the prompt?"}\n',
         'line 2 has no non-empty string "prompt"'),
        ('{"prompt": 3}\n', 'no non-empty string "prompt"'),
        ('{"prompt": "  "}\n', 'no non-empty string "prompt"'),
        ("\n\n", "holds no prompts"),
    ],
)
def test_bad_prompt_files(tmp_path, test_split, no_model, content, match):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(content)
    with pytest.raises(InputError, match=match):
        run(tmp_path, test_split, {"prompts_uri": str(prompts)})


@pytest.mark.parametrize(
    ("params", "match"),
    [({"max_new_tokens": 0}, "max_new_tokens"), ({"temperature": 7}, "temperature"),
     ({"top_p": 0.0}, "top_p"), ({"generation_batch_size": 0}, "generation_batch_size")],
)
def test_generation_settings_out_of_range(tmp_path, test_split, no_model, params, match):
    with pytest.raises(InputError, match=match):
        run(tmp_path, test_split, params)


def test_missing_prompt_file(tmp_path, test_split, no_model):
    with pytest.raises(InputError, match="does not exist"):
        run(tmp_path, test_split, {"prompts_uri": str(tmp_path / "nope.jsonl")})
