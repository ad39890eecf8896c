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
        infer.run_inference({"prompts_uri": str(prompts)}, str(test_split), "adapter",
                            str(tmp_path / "out.jsonl"))


@pytest.mark.parametrize(
    ("params", "match"),
    [({"max_new_tokens": 0}, "max_new_tokens"), ({"temperature": 7}, "temperature"),
     ({"top_p": 0.0}, "top_p"), ({"generation_batch_size": 0}, "generation_batch_size")],
)
def test_generation_settings_out_of_range(tmp_path, test_split, no_model, params, match):
    with pytest.raises(InputError, match=match):
        infer.run_inference(params, str(test_split), "adapter", str(tmp_path / "out.jsonl"))


def test_missing_prompt_file(tmp_path, test_split, no_model):
    with pytest.raises(InputError, match="does not exist"):
        infer.run_inference({"prompts_uri": str(tmp_path / "nope.jsonl")}, str(test_split),
                            "adapter", str(tmp_path / "out.jsonl"))
