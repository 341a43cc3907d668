"""Typed configs: dataclasses that reject unknown or misspelt fields with a suggestion.

Recipes are Python modules in arcface_torch's style (``config.lr = 0.1`` after a base), but the
object they assign to is a dataclass, so a typo is an error instead of a silently added key.
:func:`load_config_module` runs such a module and returns the validated
config; :meth:`TypedConfig.to_dict` gives the resolved JSON dumped next to every result.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import os
import runpy
import types
import typing
from typing import Any, Mapping, TypeVar

from facenas.errors import ConfigError, FacenasError

C = TypeVar("C", bound="TypedConfig")


def _suggest(name: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _check_type(value: Any, annotation: Any) -> bool:
    """Best-effort runtime check of ``value`` against a (resolved) type annotation."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, set, frozenset):
        if not isinstance(value, (list, tuple)) and origin in (list, tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_check_type(v, a) for v, a in zip(value, args))
        inner = args[0] if args else Any
        return all(_check_type(v, inner) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            return False
        kt, vt = args if args else (Any, Any)
        return all(_check_type(k, kt) and _check_type(v, vt) for k, v in value.items())
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


class FieldTypeError(ConfigError):
    """A typed config refused a field's value for its type (:meth:`TypedConfig.validate`), with what a caller may
    act on: ``config`` (the class's name), ``field``, ``value`` (the refused one) and ``expected`` (the annotation,
    as text). ``facenas nni check`` uses it to tell a ``${...}`` reference in a typed field (its value exists only
    at run time) from a wrong value; the message is the one-line user message."""

    def __init__(self, source: str, config: str, field: str, value: Any, expected: str):
        self.source, self.config, self.field, self.value, self.expected = source, config, field, value, expected
        super().__init__(f"{source}: field '{field}' = {value!r} has type {type(value).__name__}, expected {expected}")

    def __reduce__(self):  # picklable like the other errors (a worker process may raise it)
        return (type(self), (self.source, self.config, self.field, self.value, self.expected))


def refused_field(exc: BaseException | None) -> FieldTypeError | None:
    """The :class:`FieldTypeError` behind ``exc``: ``exc`` itself, or the one it was raised from or while handling
    (a caller that re-raised it with its own context, ``raise ConfigError(f"{path}: {exc}") from None``)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, FieldTypeError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class TypedConfig:
    """Mixin for ``@dataclass`` configs: strict attribute names, type checks, dict round trip.

    Subclasses are dataclasses; they may override :meth:`check` for cross-field validation.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        fields = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        if name not in fields and not name.startswith("_"):
            raise ConfigError(
                f"{type(self).__name__} has no field '{name}'{_suggest(name, fields)}"
                f" Fields: {', '.join(sorted(fields))}"
            )
        object.__setattr__(self, name, value)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], source: str = "config") -> C:
        """Build from a mapping; unknown keys fail naming ``source`` and the close matches."""
        names = cls.field_names()
        unknown = [k for k in data if k not in names]
        if unknown:
            parts = [f"'{k}'{_suggest(k, names)}" for k in unknown]
            raise ConfigError(f"{source}: unknown field(s) for {cls.__name__}: {'; '.join(parts)}")
        obj = cls(**dict(data))  # type: ignore[call-arg]
        obj.validate(source)
        return obj

    def validate(self, source: str = "config") -> None:
        """Check every field's type, then :meth:`check`; raise :class:`ConfigError` naming the field."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            ann = hints.get(f.name, Any)
            if not _check_type(value, ann):
                raise FieldTypeError(source, type(self).__name__, f.name, value, str(ann))
        self.check(source)

    def check(self, source: str) -> None:
        """Cross-field validation hook for subclasses."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def replace(self: C, **changes: Any) -> C:
        data = self.to_dict()
        data.update(changes)
        return type(self).from_dict(data, source="replace()")

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)


def _module_file(name: str) -> str:
    """The ``.py`` file of the importable module ``name`` (a recipe given by dotted name)."""
    hint = "give the path to a .py recipe (a module that assigns `config`)"
    if name.endswith(".py") or not name.replace(".", "").replace("_", "").isalnum():
        raise ConfigError(f"config '{name}' is not a file; {hint}")
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:  # a missing parent package: find_spec imports it
        raise ConfigError(f"config '{name}' is neither a file nor an importable module ({exc}); {hint}") from None
    if spec is None or not spec.origin or not spec.origin.endswith(".py") or not os.path.isfile(spec.origin):
        where = f" (it is {spec.origin})" if spec is not None and spec.origin else ""
        raise ConfigError(f"config '{name}' is neither a file nor a Python source module{where}; {hint}")
    return spec.origin


def _run_recipe(path: str) -> dict[str, Any]:
    """Run the recipe at ``path`` (the user's own config code, by design) and return its globals.

    A recipe that does not compile or raises while it runs (a failing import, a typo'd name) is
    a :class:`ConfigError` naming the recipe's file and line, not a traceback.
    """
    try:
        return runpy.run_path(path)
    except ConfigError as exc:  # a misspelt field set in the recipe: already one line
        raise ConfigError(f"{path}: {exc}") from None
    except FacenasError:  # already one line (a missing optional package, ...)
        raise
    except SyntaxError as exc:
        where = f"{exc.filename or path}, line {exc.lineno}" if exc.lineno else (exc.filename or path)
        raise ConfigError(f"{where}: the recipe does not compile: {exc.msg}; fix its syntax") from None
    except Exception as exc:  # the recipe's own code failed: name where, not a traceback
        import traceback

        frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.abspath(f.filename) == os.path.abspath(path)]
        where = f"{path}, line {frames[-1].lineno}" if frames else path
        fix = (f"install '{exc.name}' or remove the import" if isinstance(exc, ModuleNotFoundError) and exc.name
               else "fix the recipe")
        raise ConfigError(f"{where}: the recipe failed while running: {type(exc).__name__}: {exc}; {fix}") from None


def load_config_module(path: str | os.PathLike, cls: type[C], variable: str = "config") -> C:
    """Run the Python config module at ``path`` and return its ``variable`` as a validated ``cls``.

    The module may assign ``config`` as an instance of ``cls`` (fields set one by one, as in
    arcface_torch recipes) or as a plain dict. A dotted module name is accepted too.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        path = _module_file(path)
    namespace = _run_recipe(path)
    if variable not in namespace:
        raise ConfigError(f"{path}: defines no '{variable}'; a recipe must assign `{variable} = ...`")
    value = namespace[variable]
    if isinstance(value, cls):
        value.validate(path)
        return value
    if isinstance(value, Mapping):
        return cls.from_dict(value, source=path)
    raise ConfigError(f"{path}: '{variable}' is a {type(value).__name__}, expected {cls.__name__} or dict")
