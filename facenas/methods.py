"""Search methods as plugins: discovered through the ``facenas.methods`` entry-point group.

A method is a Python package that a distribution declares as an entry point::

    entry_points={"facenas.methods": ["enas = facenas.plugins.enas"]}

The package (cheap to import: no torch at the top) assigns ``FACENAS_METHOD``, a
:class:`MethodSpec` naming the modules that register the method's spaces, stages and strategies.
The registries (``SPACES``, ``STAGES``, ``STRATEGIES``) import those modules on their first lookup,
so ``import facenas`` and ``facenas --help`` stay cheap. The built-in methods (enas, tnas, ofa)
register exactly as a third-party one does (see ``examples/facenas-random-search``).

A method whose package, spec or modules cannot be imported is an error naming it
(:class:`~facenas.registry.PluginLoadError`), never a silently smaller registry.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import threading
from typing import Any, Iterable, Mapping

from facenas.registry import PluginLoadError

#: The entry-point group every method (built-in or third-party) registers in.
ENTRY_POINT_GROUP = "facenas.methods"
#: The attribute of a method package that holds its :class:`MethodSpec`.
SPEC_ATTRIBUTE = "FACENAS_METHOD"
#: Registry kinds a method contributes to, as the :class:`MethodSpec` fields that list their modules.
KINDS = ("spaces", "stages", "strategies")


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """What a method package declares about itself (assigned to ``FACENAS_METHOD``).

    Args:
        spaces: modules that register the method's search spaces in ``SPACES``.
        stages: modules that register its trial stages (``<method>.<what>``) in ``STAGES``.
        strategies: modules that register its ask/tell strategies in ``STRATEGIES``.
        search_stage: the stage ``facenas search METHOD`` runs when no ``--stage`` is given.
        docs: the method's documentation (a path relative to its repository, or a URL).
        summary: one line saying what the method is.
    """

    spaces: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    strategies: tuple[str, ...] = ()
    search_stage: str = ""
    docs: str = ""
    summary: str = ""


@dataclasses.dataclass(frozen=True)
class Method:
    """One discovered method: its entry point and its spec."""

    name: str
    package: str
    distribution: str
    spec: MethodSpec

    def modules(self, kind: str) -> tuple[str, ...]:
        return tuple(getattr(self.spec, kind))


_lock = threading.RLock()
_methods: dict[str, Method] | None = None


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _load(ep: importlib.metadata.EntryPoint) -> Method:
    dist = ep.dist.name if getattr(ep, "dist", None) is not None else "?"
    where = f"method '{ep.name}' (entry point {ep.name} = {ep.value} of the distribution {dist})"
    try:
        package = importlib.import_module(ep.value.split(":")[0])
    except Exception as exc:
        raise PluginLoadError(f"{where} cannot be imported: {type(exc).__name__}: {exc}") from exc
    spec = getattr(package, SPEC_ATTRIBUTE, None)
    if not isinstance(spec, MethodSpec):
        raise PluginLoadError(f"{where}: the package assigns no {SPEC_ATTRIBUTE} = facenas.methods.MethodSpec(...) "
                              f"(found {type(spec).__name__})")
    return Method(name=ep.name, package=package.__name__, distribution=dist, spec=spec)


def methods(reload: bool = False) -> dict[str, Method]:
    """Every installed method by name (entry points of :data:`ENTRY_POINT_GROUP`), loaded once."""
    global _methods
    with _lock:
        if _methods is not None and not reload:
            return _methods
        found: dict[str, Method] = {}
        for ep in _entry_points():
            method = _load(ep)
            if method.name in found and found[method.name].package != method.package:
                other = found[method.name]
                raise PluginLoadError(f"method '{method.name}' is registered twice: {other.package} "
                                      f"({other.distribution}) and {method.package} ({method.distribution}); "
                                      "uninstall one of the distributions")
            found[method.name] = method
        if not any(m.distribution == "facenas" for m in found.values()):
            raise PluginLoadError(f"no built-in method found in the '{ENTRY_POINT_GROUP}' entry points: facenas is "
                                  "not installed as a distribution (run `pip install -e .` in the repository)")
        _methods = dict(sorted(found.items()))
        return _methods


def get_method(name: str) -> Method:
    """The installed method ``name``; unknown names fail with close matches."""
    import difflib

    from facenas.registry import UnknownNameError

    found = methods()
    if name not in found:
        close = difflib.get_close_matches(name, list(found), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown method '{name}'{hint or '.'} Installed: {', '.join(found)}")
    return found[name]


def method_modules(kind: str) -> list[str]:
    """The modules every installed method lists for ``kind`` (``spaces``, ``stages``, ``strategies``)."""
    if kind not in KINDS:  # pragma: no cover - programming error
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    out: list[str] = []
    for method in methods().values():
        out += [m for m in method.modules(kind) if m not in out]
    return out


def _owned(method: Method, registry: Any) -> list[str]:
    prefix = method.package + "."
    owned = set(method.modules("spaces") + method.modules("stages") + method.modules("strategies"))
    return [name for name in registry.names()
            if (origin := registry.origin(name)) is not None and (origin in owned or origin.startswith(prefix))]


def describe(registries: Mapping[str, Any], names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Each method's name, package, distribution, docs and the entries it registers.

    ``registries`` maps a kind (``spaces``, ``stages``, ``strategies``) to its registry (passed in:
    the registries live above the core). Entries are attributed by the module that defines them
    (the method's package or a module its spec lists); this imports the methods' modules.
    """
    found = methods()
    selected = [get_method(n) for n in names] if names else list(found.values())
    return [{"name": m.name, "package": m.package, "distribution": m.distribution, "summary": m.spec.summary,
             "docs": m.spec.docs, "search_stage": m.spec.search_stage,
             **{kind: _owned(m, registry) for kind, registry in registries.items()}}
            for m in selected]
