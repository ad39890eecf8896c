"""The house's one rule about imports: a step depends only on `components/common/`.

Why: a step that imports another step (or `pipelines/`) cannot be read, tested or changed on its
own, and the container runs it with only what it imports. Checked on the source's import
statements, so a new cross-import fails here rather than in review."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = sorted(p.parent.name for p in (ROOT / "components").glob("*/component.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_steps_import_only_common_and_themselves():
    assert {"fine_tune", "evaluate", "inference", "prepare_data", "report"} <= set(STEPS)
    wrong = {}
    for step in STEPS:
        for path in (ROOT / "components" / step).rglob("*.py"):
            for mod in imported_modules(path):
                own = mod == f"components.{step}" or mod.startswith(f"components.{step}.")
                common = mod == "components.common" or mod.startswith("components.common.")
                if (mod.startswith("components.") and not (own or common)) or (
                        mod.split(".")[0] in ("pipelines", "cli")):
                    wrong.setdefault(str(path.relative_to(ROOT)), []).append(mod)
    assert not wrong, wrong


def test_common_imports_no_step():
    for path in (ROOT / "components" / "common").rglob("*.py"):
        bad = [m for m in imported_modules(path)
               if m.split(".")[0] in ("pipelines", "cli")
               or (m.startswith("components.") and not m.startswith("components.common"))]
        assert not bad, (path, bad)
