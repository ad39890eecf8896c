"""The one helper that turns a pydantic ValidationError into the CLI's one-line message."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator, model_validator

from components.common.errors import InputError, validation_error


class Knobs(BaseModel):
    rank: int
    name: str

    @field_validator("rank")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("rank must be positive; e.g. 16")
        return v

    @model_validator(mode="after")
    def _pair(self) -> Knobs:
        if self.name == "bad":
            raise ValueError("name 'bad' is reserved")
        return self


def error_of(**values: object) -> InputError:
    with pytest.raises(ValidationError) as caught:
        Knobs(**values)
    return validation_error(caught.value, "knobs")


def test_every_bad_field_on_one_line_without_pydantic_prefixes() -> None:
    err = error_of(rank=0, name=["x"])
    assert isinstance(err, InputError)
    text = str(err)
    assert "\n" not in text and "Value error" not in text
    assert text.startswith("rank: rank must be positive; e.g. 16; name: ")


def test_a_model_level_problem_is_named_by_the_subject() -> None:
    assert str(error_of(rank=1, name="bad")) == "knobs: name 'bad' is reserved"
