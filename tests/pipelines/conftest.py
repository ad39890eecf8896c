"""Fixtures for the pipeline tests: offline Vertex AI (the real client, requests captured;
implementations in tests/cli/vertex_fakes.py and tests/serving_fakes.py)."""

from tests.cli.vertex_fakes import vertex  # noqa: F401 - fixture
from tests.serving_fakes import registry  # noqa: F401 - fixture
