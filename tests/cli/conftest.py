"""Fixtures for the Vertex CLI tests (implementation in vertex_fakes.py)."""

from tests.cli.vertex_fakes import template, vertex  # noqa: F401 - fixtures
