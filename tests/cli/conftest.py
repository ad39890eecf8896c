"""Fixtures for the Vertex CLI tests (implementation in vertex_fakes.py)."""

from tests.cli.vertex_fakes import template, vertex  # noqa: F401 - fixtures
from tests.serving_fakes import registry  # noqa: F401 - fixture (model registry, endpoints)
