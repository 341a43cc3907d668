"""Methods as plugins: entry-point discovery, ``facenas methods``, and errors that name what is broken."""
from __future__ import annotations

import importlib.metadata
import json
import sys

import pytest

from facenas import methods as methods_mod
from facenas.cli import main
from facenas.registry import PluginLoadError, Registry, UnknownNameError

BUILT_IN = {
    "enas": {"spaces": {"enas", "enas_test"}, "stages": {"enas.search", "enas.random_arcs", "enas.retrain"}, "strategies": {"enas"}},
    "ofa": {"spaces": {"ofa", "ofa_tiny"}, "stages": {"ofa.train_supernet", "ofa.evaluate", "ofa.search", "ofa.finetune"},
            "strategies": {"ofa_evolution"}},
    "tnas": {"spaces": {"tnas"}, "stages": {"tnas.search", "tnas.train"}, "strategies": set()},
}


def test_methods_json_lists_the_built_in_methods_with_their_entries(capsys):
    assert main(["methods", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    for name, expected in BUILT_IN.items():
        row = rows[name]
        assert row["distribution"] == "facenas" and row["package"] == f"facenas.plugins.{name}"
        assert row["docs"] == f"docs/{name}.md" and row["search_stage"] in expected["stages"]
        for kind in ("spaces", "stages", "strategies"):
            assert set(row[kind]) == expected[kind], (name, kind)
    # infrastructure entries belong to no method
    assert not any("toy" in row["spaces"] or "engine.train" in row["stages"] or "random" in row["strategies"]
                   for row in rows.values())
    assert main(["methods", "ofa"]) == 0
    assert "ofa_evolution" in capsys.readouterr().out


def test_built_in_methods_come_from_entry_points_only():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=methods_mod.ENTRY_POINT_GROUP)
           if ep.dist is not None and ep.dist.name == "facenas"}
    assert eps == {"enas": "facenas.plugins.enas", "ofa": "facenas.plugins.ofa", "tnas": "facenas.plugins.tnas"}
    # the registries list no method module by hand: they ask the installed methods
    from facenas.nas.space import SPACES
    from facenas.nas.stages import STAGES
    from facenas.nas.strategy import STRATEGIES

    for registry in (SPACES, STAGES, STRATEGIES):
        assert not any(m.split(".")[2:3] in (["enas"], ["ofa"], ["tnas"]) for m in registry._modules), registry


@pytest.fixture(autouse=True)
def _fresh_method_cache():
    """Each test sees the installed methods as they are (a test may have faked an entry point)."""
    yield
    methods_mod._methods = None


def _fake_entry_point(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=methods_mod.ENTRY_POINT_GROUP)


def test_a_method_that_fails_to_import_is_an_error_naming_it(monkeypatch):
    real = methods_mod._entry_points()
    monkeypatch.setattr(methods_mod, "_entry_points", lambda: real + [_fake_entry_point("ghost", "no_such_pkg.ghost")])
    with pytest.raises(PluginLoadError, match=r"method 'ghost' \(entry point ghost = no_such_pkg.ghost.*cannot be imported"):
        methods_mod.methods(reload=True)
    # a package without a spec
    monkeypatch.setattr(methods_mod, "_entry_points", lambda: real + [_fake_entry_point("bare", "json")])
    with pytest.raises(PluginLoadError, match="method 'bare'.*assigns no FACENAS_METHOD"):
        methods_mod.methods(reload=True)
    monkeypatch.setattr(methods_mod, "_entry_points", lambda: real)
    assert set(methods_mod.methods(reload=True)) >= set(BUILT_IN)


def test_the_cli_reports_a_broken_method_in_one_line(monkeypatch, capsys):
    real = methods_mod._entry_points()
    monkeypatch.setattr(methods_mod, "_entry_points", lambda: real + [_fake_entry_point("ghost", "no_such_pkg")])
    monkeypatch.setattr(methods_mod, "_methods", None)
    assert main(["methods"]) == 3
    err = capsys.readouterr().err
    assert "ghost" in err and "no_such_pkg" in err and "Traceback" not in err


def test_missing_facenas_distribution_says_to_install(monkeypatch):
    monkeypatch.setattr(methods_mod, "_entry_points", lambda: [])
    with pytest.raises(PluginLoadError, match="pip install -e ."):
        methods_mod.methods(reload=True)


def test_registry_module_that_fails_to_import_is_named():
    reg: Registry = Registry("widget", modules=["facenas.no_such_module"])
    with pytest.raises(PluginLoadError, match="widget registry: the module 'facenas.no_such_module' cannot be imported"):
        reg.names()
    reg2: Registry = Registry("widget", discover=lambda: ["json", "no_such_top_level_pkg.sub"])
    with pytest.raises(PluginLoadError, match="no_such_top_level_pkg.sub"):
        reg2.get("x")


def test_unknown_method_suggests_close_names():
    with pytest.raises(UnknownNameError, match="unknown method 'enass'; did you mean 'enas'"):
        methods_mod.get_method("enass")


def test_registry_records_where_an_entry_is_defined():
    from facenas.nas.space import SPACES

    assert SPACES.origin("ofa") == "facenas.plugins.ofa.space"
    assert SPACES.origin("toy") == "facenas.plugins.toy"
    assert "facenas.plugins.enas" not in sys.modules or SPACES.origin("enas").startswith("facenas.plugins.enas")


def test_a_missing_command_module_is_an_error_naming_it(monkeypatch):
    """The CLI used to skip a listed command module that did not exist (``facenas search`` was missing so)."""
    from facenas import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "facenas.plugins.no_such_cli"])
    with pytest.raises(ModuleNotFoundError, match="facenas.plugins.no_such_cli"):
        cli.build_parser()
    monkeypatch.undo()
    assert {"methods", "search"} <= set(cli.build_parser()._subparsers._group_actions[0].choices)
