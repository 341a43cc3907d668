"""Error types shared by every facenas module.

Every error a user can cause derives from :class:`FacenasError`; the CLI prints its message and
exits with code 2 instead of a traceback. Messages say what was given, what was expected and how
to fix it (house style rule 10).
"""
from __future__ import annotations


class FacenasError(Exception):
    """Base class of user-facing errors (bad input, bad config, missing optional package)."""

    exit_code = 2


class ConfigError(FacenasError, ValueError):
    """A config field is unknown, mistyped or out of range."""


class DataFormatError(FacenasError, ValueError):
    """A data file (``.rec``, ``.idx``, ``.bin``, image folder) does not have the expected format.

    Args:
        path: the file or folder that is wrong.
        problem: what is wrong, naming the record / pair / field where possible.
        fix: what the user can do about it (optional).
    """

    def __init__(self, path: str, problem: str, fix: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        msg = f"{self.path}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)

    def __reduce__(self):  # picklable, so a DataLoader worker can hand it to the main process
        return (type(self), (self.path, self.problem, self.fix))


class ModelDivergedError(FacenasError):
    """A model's outputs are NaN / inf (it diverged), so the metric asked for does not exist."""


class MissingDependencyError(FacenasError, ImportError):
    """An optional heavy package is needed for this feature but is not installed."""

    def __init__(self, package: str, feature: str, install: str | None = None):
        self.package = package
        install = install or f"pip install {package}"
        super().__init__(f"{feature} needs the package '{package}', which is not installed: run `{install}`")


def require(module: str, feature: str, install: str | None = None):
    """Import ``module`` lazily, raising :class:`MissingDependencyError` with an install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module.split(".")[0], feature, install) from exc
