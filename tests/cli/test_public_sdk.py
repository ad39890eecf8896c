"""The CLI talks to google-cloud-aiplatform through its public API only: a private attribute
(`_gca_resource`, `_sync_gca_resource`, `_parent`, `_dashboard_uri`, ...) can change in any SDK
release and would break submit, --wait or schedules without a test noticing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "cli"


@pytest.mark.parametrize("module", sorted(p.name for p in CLI.glob("*.py")))
def test_no_private_attribute_of_another_object(module: str) -> None:
    tree = ast.parse((CLI / module).read_text())
    private = [
        f"{module}:{node.lineno} .{node.attr}" for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
    ]
    assert private == []
