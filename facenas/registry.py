"""Name -> factory registries for backbones, heads, spaces, strategies and runtimes (timm-style).

Entries register with a decorator in the module that defines them. A registry knows the modules
that populate it (listed, or named by the installed methods' entry points through ``discover``,
see :mod:`facenas.methods`) and imports them on first lookup, so ``import facenas`` stays cheap and
nothing depends on import order. Unknown names fail with close matches; a listed module that cannot
be imported is an error naming it.
"""
from __future__ import annotations

import difflib
import importlib
import threading
from typing import Any, Callable, Generic, Iterable, TypeVar

from facenas.errors import FacenasError

T = TypeVar("T")


class UnknownNameError(FacenasError, KeyError):
    """A registry lookup with a name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class PluginLoadError(FacenasError):
    """A module that registers entries (or a method's entry point) cannot be imported.

    An installation problem rather than bad input, so it has its own exit code.
    """

    exit_code = 3


class Registry(Generic[T]):
    """A registry of named factories.

    Args:
        kind: what the entries are, used in messages (``"backbone"``).
        modules: dotted module paths imported on first lookup to populate the registry.
        discover: called on first lookup for more such modules (e.g. the installed methods').
    """

    def __init__(self, kind: str, modules: Iterable[str] = (), *,
                 discover: Callable[[], Iterable[str]] | None = None):
        self.kind = kind
        self._modules = list(modules)
        self._discover = discover
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str | None] = {}
        self._loaded = False
        self._lock = threading.RLock()

    def add_module(self, module: str) -> None:
        """Add a module that populates this registry (imported on next lookup)."""
        with self._lock:
            if module not in self._modules:
                self._modules.append(module)
                self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            modules = list(self._modules)
            if self._discover is not None:
                modules += [m for m in self._discover() if m not in modules]
            for module in modules:
                try:
                    importlib.import_module(module)
                except ImportError as exc:
                    # The listed module, or something it imports, is missing: name the module
                    # rather than leave a silently smaller registry.
                    raise PluginLoadError(f"{self.kind} registry: the module '{module}' cannot be imported "
                                          f"({type(exc).__name__}: {exc}); reinstall the package that provides it "
                                          "or remove its registration") from exc
            self._loaded = True

    def register(self, name: str | None = None, *, overwrite: bool = False) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``)."""

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            with self._lock:
                if key in self._entries and self._entries[key] is not obj and not overwrite:
                    raise ValueError(f"{self.kind} '{key}' is already registered")
                self._entries[key] = obj
                self._origins[key] = getattr(obj, "__module__", None)
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The entry registered as ``name``; unknown names raise with close matches."""
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(sorted(self._entries))
            raise UnknownNameError(f"unknown {self.kind} '{name}'{hint} Known: {known}") from None

    def origin(self, name: str) -> str | None:
        """The module that defines the entry ``name`` (``None`` when unknown)."""
        self.get(name)
        return self._origins.get(name)

    def create(self, name: str, **kwargs: Any) -> Any:
        """Call the factory registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        """Sorted registered names."""
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
