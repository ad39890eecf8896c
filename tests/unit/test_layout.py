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


HOUSE = ("cli", "components", "pipelines", "planning")
STEP_PACKAGES = [s for s in STEPS if s != "common"]  # common/ has the component factory


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def house_imports(path: Path) -> set[str]:
    """The house modules `path` imports, lazily inside a function or not: `from a.b import c`
    counts as a.b.c when that is a module, else a.b."""
    modules = {module_name(p) for pkg in HOUSE for p in (ROOT / pkg).rglob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in modules:
                    found.add(sub)
                elif node.module in modules:
                    found.add(node.module)
    return found


def test_no_import_circle_anywhere_in_the_house():
    graph = {module_name(p): house_imports(p) for pkg in HOUSE for p in (ROOT / pkg).rglob("*.py")}
    # A package's __init__ is imported with any of its modules; none here imports anything.
    graph = {m: {d for d in deps if d != m} for m, deps in graph.items()}
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                circles.append([*path[path.index(d):], d])
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, circles


def test_packages_depend_one_way():
    """components <- planning <- pipelines <- cli: nothing imports a package to its right."""
    order = ["components", "planning", "pipelines", "cli"]
    wrong = {}
    for pkg in order:
        for path in (ROOT / pkg).rglob("*.py"):
            later = [m for m in house_imports(path)
                     if order.index(m.split(".")[0]) > order.index(pkg)]
            if later:
                wrong[str(path.relative_to(ROOT))] = later
    assert not wrong, wrong


def public_names(module: str) -> set[str]:
    """A step module's `__all__`, read from its source."""
    path = ROOT / (module.replace(".", "/") + ".py")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def test_cli_and_planning_use_only_a_steps_public_entry_points():
    """Outside components/, a step is reached only through the names its module declares public
    (`__all__`: its `check`, its run function), never its internals."""
    wrong = {}
    for pkg in ("cli", "planning"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    step = node.module.split(".")[1] if node.module.startswith(
                        "components.") else None
                    if step in STEP_PACKAGES and node.module.count(".") == 2:
                        public = public_names(node.module)
                        bad = [a.name for a in node.names if a.name not in public]
                    elif step in STEP_PACKAGES:  # `from components.deploy import deploy`: the module
                        bad = [f"{node.module}.{a.name}" for a in node.names
                               if public_names(f"{node.module}.{a.name}") == set()]
                    else:
                        continue
                    if bad:
                        wrong.setdefault(str(path.relative_to(ROOT)), []).extend(bad)
                elif isinstance(node, ast.Import):
                    bad = [a.name for a in node.names if a.name.split(".")[0] == "components"
                           and a.name.split(".")[1:2] and a.name.split(".")[1] in STEP_PACKAGES]
                    if bad:
                        wrong.setdefault(str(path.relative_to(ROOT)), []).extend(bad)
    assert not wrong, wrong
    for module in ("components.prepare_data.prepare", "components.fine_tune.train",
                   "components.inference.infer"):
        assert "check" in public_names(module), module


def test_no_cli_file_is_over_about_300_lines():
    long = {p.name: n for p in (ROOT / "cli").glob("*.py")
            if (n := len(p.read_text().splitlines())) > 310}
    assert not long, long


def test_the_unknown_profile_message_is_written_once():
    hits = [str(p.relative_to(ROOT)) for pkg in HOUSE for p in (ROOT / pkg).rglob("*.py")
            if "unknown profile" in p.read_text()]
    assert hits == ["planning/profiles.py"], hits
