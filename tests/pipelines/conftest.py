"""Fixtures for the pipeline tests (implementation in tests/serving_fakes.py)."""

from tests.serving_fakes import registry  # noqa: F401 - fixture
