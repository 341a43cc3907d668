"""The ``facenas`` command line.

Each command group lives in its own module exposing ``register(subparsers)``; the module must
import cheaply (heavy imports happen inside the command's handler). A handler returns an exit
code (or None for 0). User errors (:class:`facenas.errors.FacenasError`) print one message and
exit with code 2, never a traceback. Environment errors -- any ``OSError`` that reaches here: a
full disk, a read-only or unwritable folder -- print one line naming the path and the errno and
exit with code 3 (:class:`facenas.errors.EnvironmentFailure`); an ``OSError`` about the path the
user gave (missing, a file where a folder belongs) exits 2. ``-vv`` logs the traceback too.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from facenas import __version__
from facenas.errors import FacenasError, describe_os_error
from facenas.utils.log import setup_logging

#: Modules that add sub-commands, in the order they appear in ``facenas --help``.
COMMAND_MODULES: list[str] = [
    "facenas.adapters.insightface.cli",  # data pack|pairs|synth|info, eval
    "facenas.plugins.engine.cli",  # train
    "facenas.plugins.search_cli",  # methods, search METHOD (any installed method's stage, without NNI)
    "facenas.plugins.ofa.cli",  # ofa train (progressive-shrinking supernet training, torchrun for DDP)
    "facenas.adapters.nni.cli",  # nni register|create|results|space
    "facenas.adapters.runtime.cli",  # export, latency, lut build|predict|validate
    "facenas.recipes.demo",  # demo: the main job on synthetic identities
]

log = logging.getLogger("facenas.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facenas",
        description="Neural architecture search for face recognition (InsightFace data, NNI experiments).",
    )
    parser.add_argument("--version", action="version", version=f"facenas {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        # By name, not an import statement: the command groups live above the core.
        mod = importlib.import_module(module)  # a missing group is a broken installation: fail naming it
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code = handler(args)
    except FacenasError as exc:
        log.debug("traceback of the error below", exc_info=True)
        print(f"facenas {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # one path for the environment's errors (ENOSPC, EROFS, EACCES, ...)
        log.debug("traceback of the error below", exc_info=True)
        error = describe_os_error(exc)
        print(f"facenas {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"facenas {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
