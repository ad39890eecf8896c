"""What the wheel holds is enough: the packaged code never imports a root script (compile.py,
scripts/, tests/ are not in the wheel), and the root compile.py is only an entry point."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from pipelines.compiler import STAMP_PREFIX

ROOT = Path(__file__).resolve().parents[2]


def wheel_packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_packaged_code_imports_nothing_outside_the_wheel() -> None:
    packages = wheel_packages()
    # first-party names that exist only in the checkout: top-level scripts and folders
    local_only = {p.stem for p in ROOT.glob("*.py")} | {
        p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    } - set(packages)
    assert {"compile", "tests"} <= local_only
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & local_only)
        for pkg in packages for path in (ROOT / pkg).rglob("*.py")
        if imported_roots(path) & local_only
    }
    assert offenders == {}


def test_root_compile_py_is_a_thin_entry_point(tmp_path: Path) -> None:
    source = (ROOT / "compile.py").read_text()
    assert len(source.splitlines()) <= 12 and "argparse" not in source
    out = tmp_path / "t.yaml"
    proc = subprocess.run([sys.executable, "compile.py", "--target", "local", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == str(out.resolve())
    assert out.read_text().startswith(STAMP_PREFIX)
    bad = subprocess.run([sys.executable, "compile.py", "--image", "Not An Image"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: image: ")


def test_the_image_copies_every_package_of_the_wheel() -> None:
    """The Dockerfile builds the wheel from the folders it copies: a package the wheel lists but
    the image lacks fails the image build (or, worse, an import on the GPU machine). The build
    context is an allowlist (.dockerignore: `*`, then `!name`), so each package must be let in
    there too: a COPY of a folder the context filters out fails the build."""
    import re

    packages = set(wheel_packages())
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert packages <= copied, sorted(packages - copied)
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert rules[0] == "*"
    admitted = {rule[1:] for rule in rules if rule.startswith("!")}
    assert copied <= admitted, sorted(copied - admitted)
