"""One exception type for bad input, so the CLI can print it as one line instead of a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class InputError(ValueError):
    """Input a user can fix (a path, a parameter, a data file). The message says what and how."""


def validation_error(exc: ValidationError, subject: str = "parameters") -> InputError:
    """One InputError naming every bad field of a pydantic ValidationError, on one line:
    `lora_r: LoRA rank must be ...; max_steps: ...`. `subject` names a model-level problem
    (one with no field). Raise it `from None`: the pydantic traceback says nothing more."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or subject
        problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return InputError("; ".join(problems))
