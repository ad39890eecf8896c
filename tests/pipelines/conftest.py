"""Fixtures for the pipeline tests: offline Vertex AI (the real client, requests captured)."""

from tests.cli.vertex_fakes import vertex  # noqa: F401 - fixture
