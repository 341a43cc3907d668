"""Error types shared by every facenas module.

Every error a user can cause derives from :class:`FacenasError`; the CLI prints its message and
exits with code 2 instead of a traceback. Messages say what was given, what was expected and how
to fix it.
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


class EnvironmentFailure(FacenasError):
    """The machine, not the input, stopped the command: a full disk, a read-only or unwritable
    folder, too many open files. The CLI prints one line naming the path and the errno and exits
    with code 3 (user errors exit 2).
    """

    exit_code = 3


class OutputFolderError(FacenasError):
    """An output folder cannot be used as asked: another run holds it, it holds a finished or
    interrupted run that neither ``--resume`` nor ``--overwrite`` was given for, or it is a file.
    """


#: errno names that say the environment failed, not the user's input (exit code 3).
ENVIRONMENT_ERRNOS = ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "EMFILE", "ENFILE", "ENOMEM", "EFBIG",
                      "ETXTBSY")


def describe_os_error(exc: OSError, action: str = "") -> FacenasError:
    """One-line :class:`FacenasError` for an ``OSError``: the path, the errno name and a fix.

    Environment errnos (:data:`ENVIRONMENT_ERRNOS`) become :class:`EnvironmentFailure` (exit 3);
    the rest (a missing file, a file where a folder was expected, ...) a user error (exit 2).
    """
    import errno as errno_mod
    import os

    name = errno_mod.errorcode.get(exc.errno or 0, "") if exc.errno else ""
    reason = exc.strerror or os.strerror(exc.errno) if exc.errno else str(exc)
    paths = [p for p in (exc.filename, getattr(exc, "filename2", None)) if p]
    where = " -> ".join(str(p) for p in paths) if paths else "(path not known)"
    fixes = {
        "ENOSPC": "free disk space or write to another folder (--output)",
        "EDQUOT": "free space within your quota or write to another folder (--output)",
        "EFBIG": "the file exceeds the size limit (ulimit -f) or the file system's maximum; raise it or write elsewhere",
        "EROFS": "the file system is read-only; write to another folder (--output)",
        "EACCES": "no permission; fix the folder's permissions or write to another folder (--output)",
        "EPERM": "operation not permitted; fix the permissions or write to another folder (--output)",
        "EMFILE": "too many open files; raise `ulimit -n` or lower num_workers",
        "ENFILE": "the system is out of file handles; close other programs or lower num_workers",
        "EEXIST": "the path exists and is not a folder; give a folder path",
        "ENOTDIR": "a part of the path is a file, not a folder; give a folder path",
        "EISDIR": "the path is a folder; give a file",
        "ENOENT": "check the path",
    }
    fix = fixes.get(name, "check the path and the file system")
    what = f"{action} " if action else ""
    message = f"{what}{where}: {reason} ({name or 'OSError'}); {fix}"
    cls = EnvironmentFailure if name in ENVIRONMENT_ERRNOS else FacenasError
    return cls(message)
