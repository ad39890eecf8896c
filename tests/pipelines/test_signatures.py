"""The component and pipeline signatures are plain, committed Python that the generator would
write again unchanged, and nothing in the house is `exec`'d.

What could go wrong: a config section changed and the committed signature files were not
regenerated (the build would rewrite them, but the image and the review would see old ones), a
signature that only exists at run time again, or a component whose source KFP embeds is not
the file a reader opens."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from components.common.config import TrainConfig
from pipelines.generate import ROOT, expected_sources
from tests.signature_snapshot import CHECKED_OUT


def test_committed_signatures_are_what_the_generator_writes():
    expected = expected_sources()
    stale = [p.as_posix() for p, text in expected.items() if CHECKED_OUT.get(p) != text]
    assert not stale, (f"out of date: {', '.join(stale)}; run `uv run python "
                       "scripts/generate_components.py` (or compile.py) and commit the result")


def test_signatures_are_in_their_files():
    """`grep "def fine_tune(" components` finds the signature KFP embeds, with its Args."""
    from components.fine_tune.component import fine_tune
    from pipelines import signature

    path = Path(inspect.getsourcefile(fine_tune.python_func))
    assert path == ROOT / "components/fine_tune/component.py"
    text = path.read_text()
    assert "\ndef fine_tune(\n    base: Input[Model],\n" in text
    assert f"        lora_r: {TrainConfig.model_fields['lora_r'].description}\n" in text
    assert "lora_r" in fine_tune.component_spec.inputs
    assert "\ndef lora_pipeline(\n    base_model: str = " in (ROOT / "pipelines/signature.py"
                                                            ).read_text()
    assert list(inspect.signature(signature.lora_pipeline).parameters)[0] == "base_model"


def test_nothing_under_components_or_pipelines_is_exec_d():
    calls = []
    for pkg in ("components", "pipelines"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in ("exec", "eval", "compile")):
                    calls.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}")
                if isinstance(node, ast.Import | ast.ImportFrom) and "linecache" in (
                        [a.name for a in node.names] + [getattr(node, "module", "") or ""]):
                    calls.append(f"{path.relative_to(ROOT)}:{node.lineno} linecache")
    assert not calls
