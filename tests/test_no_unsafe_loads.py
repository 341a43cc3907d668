"""No code path unpickles arbitrary objects: every ``torch.load`` in the tree passes ``weights_only=True``."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("facenas", "adapters", "plugins", "recipes", "benchmarks", "tests", "examples")


def _unsafe_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        if (owner, node.func.attr) not in {("torch", "load"), ("pickle", "load"), ("pickle", "loads")}:
            continue
        safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                   for k in node.keywords)
        if owner == "pickle" or not safe:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {owner}.{node.func.attr} without weights_only=True")
    return found


def test_every_checkpoint_load_is_weights_only():
    offenders = [hit for top in SOURCES if (ROOT / top).is_dir()
                 for path in sorted((ROOT / top).rglob("*.py")) for hit in _unsafe_calls(path)]
    assert not offenders, "unsafe loads:\n" + "\n".join(offenders)


def test_the_check_sees_an_unsafe_call(tmp_path, monkeypatch):
    bad = ROOT / "tests" / "_probe_unsafe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: "import torch\ntorch.load('x', weights_only=False)\n")
    assert _unsafe_calls(bad) == ["tests/_probe_unsafe.py:2: torch.load without weights_only=True"]
