"""Name -> factory registries for backbones, heads, spaces, strategies and runtimes (timm-style).

Entries register with a decorator in the module that defines them. A registry knows the modules
that populate it and imports them on first lookup, so ``import facenas`` stays cheap and nothing
depends on import order. Unknown names fail with close matches.
"""
from __future__ import annotations

import difflib
import importlib
import logging
import threading
from typing import Any, Callable, Generic, Iterable, TypeVar

from facenas.errors import FacenasError

T = TypeVar("T")
log = logging.getLogger(__name__)


class UnknownNameError(FacenasError, KeyError):
    """A registry lookup with a name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """A registry of named factories.

    Args:
        kind: what the entries are, used in messages (``"backbone"``).
        modules: dotted module paths imported on first lookup to populate the registry.
    """

    def __init__(self, kind: str, modules: Iterable[str] = ()):
        self.kind = kind
        self._modules = list(modules)
        self._entries: dict[str, T] = {}
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
            for module in self._modules:
                try:
                    importlib.import_module(module)
                except ModuleNotFoundError as exc:
                    # A plugin module that is not part of this installation simply contributes no
                    # entries; an import error *inside* an existing module still propagates.
                    if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
                        raise
                    log.debug("%s registry: module %s is not installed", self.kind, module)
            self._loaded = True

    def register(self, name: str | None = None, *, overwrite: bool = False) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``)."""

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            with self._lock:
                if key in self._entries and self._entries[key] is not obj and not overwrite:
                    raise ValueError(f"{self.kind} '{key}' is already registered")
                self._entries[key] = obj
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
