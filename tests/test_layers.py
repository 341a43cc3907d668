"""Imports go one way: core ``facenas/`` <- ``adapters/`` <- ``plugins/`` <- ``recipes/``.

Every module's import statements (``import``/``from ... import``, relative ones resolved, inside
functions and ``TYPE_CHECKING`` blocks too) are parsed and checked against the layer order: a
module may import its own layer and the layers below it. Looking an entry up by *name* (the
registries' module lists, the CLI's command modules, ``facenas.methods`` entry points) is how a lower
layer reaches a higher one without importing it.

The known violations are listed in :data:`ALLOWED` with the follow-up that removes them; any new
violation fails, and so does an allowed one that no longer occurs (delete it from the list).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: source folder -> (package it installs as, layer rank: a module may import ranks <= its own)
LAYERS = {"facenas": ("facenas", 0), "adapters": ("facenas.adapters", 1), "plugins": ("facenas.plugins", 2),
          "recipes": ("facenas.recipes", 3)}

_FOLLOW_UP_CORE_API = "follow-up: the NAS API (space, strategy, stage, report) moves into core"
#: (importing module, imported module) -> why it is still there. Shrink it; never grow it.
ALLOWED: dict[tuple[str, str], str] = {
    ("facenas", "facenas.adapters.insightface.backbones"):
        "facenas.get_model re-exports the backbone factory; follow-up: get_model and the backbone registry move into core",
    ("facenas.adapters.insightface.backbones", "facenas.plugins.space"):
        "get_model builds facenas.arch/1 descriptions; " + _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.check", "facenas.plugins.space"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.check", "facenas.plugins.stages"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.model_space", "facenas.plugins.space"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.pipeline", "facenas.plugins.space"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.pipeline", "facenas.plugins.stages"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.pipeline", "facenas.plugins.strategy"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.reporter", "facenas.plugins.report"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.space", "facenas.plugins.space"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.strategy", "facenas.plugins.space"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.strategy", "facenas.plugins.stages"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.strategy", "facenas.plugins.strategy"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.trial", "facenas.plugins.report"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.trial", "facenas.plugins.space"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.trial", "facenas.plugins.stages"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.nni.warm", "facenas.plugins.stages"): _FOLLOW_UP_CORE_API,
    ("facenas.adapters.runtime.lut", "facenas.plugins.space"):
        "latency tables build a space by name; " + _FOLLOW_UP_CORE_API,
}


def _module_name(folder: str, path: Path) -> str:
    package, _ = LAYERS[folder]
    rel = path.relative_to(REPO / folder).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([package, *parts])


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of everything ``path`` imports (``from a import b`` yields ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # each imported name; _deepest_module maps a non-module name back to its module
            out.update(name if alias.name == "*" else f"{name}.{alias.name}" for alias in node.names)
    return out


def _layer_of(name: str) -> int | None:
    ranked = sorted(LAYERS.values(), key=lambda pr: -len(pr[0]))  # facenas.adapters before facenas
    for package, rank in ranked:
        if name == package or name.startswith(package + "."):
            return rank
    return None


def _violations() -> dict[tuple[str, str], str]:
    """(importing module, imported module) -> file:line for every import of a higher layer."""
    found: dict[tuple[str, str], str] = {}
    for folder, (_, rank) in LAYERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            module = _module_name(folder, path)
            for name in sorted(_imports(path, module)):
                target = _layer_of(name)
                if target is not None and target > rank:
                    # report the module imported, not a name inside it (``from a import b`` -> ``a``)
                    key = (module, _deepest_module(name))
                    found.setdefault(key, str(path.relative_to(REPO)))
    return found


def _deepest_module(name: str) -> str:
    """``facenas.plugins.space.SPACES`` -> ``facenas.plugins.space`` (the file that exists)."""
    parts = name.split(".")
    for n in range(len(parts), 1, -1):
        candidate = parts[:n]
        for folder, (package, _) in LAYERS.items():
            pkg = package.split(".")
            if candidate[: len(pkg)] != pkg:
                continue
            rel = Path(REPO / folder, *candidate[len(pkg):])
            if rel.with_suffix(".py").is_file() or (rel / "__init__.py").is_file():
                return ".".join(candidate)
    return name


def test_imports_go_one_way():
    found = _violations()
    new = {k: v for k, v in found.items() if k not in ALLOWED}
    assert not new, ("imports against the layer order core <- adapters <- plugins <- recipes (reach a higher layer "
                     "by name through a registry, or move the shared piece down):\n"
                     + "\n".join(f"  {where}: {a} imports {b}" for (a, b), where in sorted(new.items())))
    gone = sorted(k for k in ALLOWED if k not in found)
    assert not gone, f"allowed violations that no longer occur; delete them from ALLOWED: {gone}"


@pytest.mark.parametrize("source, expected", [
    ("from facenas.plugins.space import SPACES\n", {("facenas.adapters.x", "facenas.plugins.space")}),
    ("def f():\n    from facenas.recipes.configs import base\n", {("facenas.adapters.x", "facenas.recipes.configs")}),
    ("from ..plugins import report\n", {("facenas.adapters.x", "facenas.plugins.report")}),
    ("from facenas.utils.io import read_json\nimport numpy\n", set()),
])
def test_the_check_sees_every_kind_of_import(tmp_path, monkeypatch, source, expected):
    """The scanner on a fake adapters module: absolute, lazy (inside a function) and relative imports."""
    fake = tmp_path / "repo"
    for folder in LAYERS:
        (fake / folder).mkdir(parents=True)
    (fake / "adapters" / "x.py").write_text(source)
    for rel in ("plugins/space.py", "plugins/report.py", "recipes/configs/__init__.py"):
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text("")
    monkeypatch.setattr(__import__(__name__, fromlist=["REPO"]), "REPO", fake)
    assert set(_violations()) == expected
