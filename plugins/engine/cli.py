"""``facenas train CONFIG``: train a backbone from a recipe (also under ``torchrun``).

    facenas train recipes/configs/celeba299_mbf_cpu.py
    facenas train recipes/configs/celeba299_mbf_cpu.py --resume          # continue a killed run
    facenas train my_recipe.py --set lr=0.05 --set network_kwargs='{"width_mult": 0.5}' --json
    torchrun --nproc_per_node=4 -m facenas.cli train recipes/configs/ms1mv3_r50_gpu.py

``--set FIELD=VALUE`` overrides a config field (VALUE is a Python literal, else a string).
With ``--json`` the final metrics are the last line of stdout.
"""
from __future__ import annotations

import argparse
import ast
import functools
import os
import sys
from typing import Any

from facenas.errors import ConfigError


def _parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["lr=0.05", "val_targets=['lfw']"]`` -> typed overrides (ints become floats for float fields)."""
    float_fields = _float_fields() if items else set()
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set lr=0.05")
        key, text = item.split("=", 1)
        try:
            value: Any = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        if isinstance(value, int) and not isinstance(value, bool) and key.strip() in float_fields:
            value = float(value)
        out[key.strip()] = value
    return out


@functools.lru_cache(maxsize=1)
def _float_fields() -> frozenset[str]:
    import dataclasses
    import typing

    from facenas.plugins.engine.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return frozenset(f.name for f in dataclasses.fields(TrainConfig) if hints[f.name] in (float, typing.Optional[float]))


def passive_openmp_on_cpu(device: str) -> None:
    """Let idle OpenMP threads sleep instead of spinning, for CPU training on shared machines.

    Measured on the shared 2-core machine under load (``benchmarks/PROTOCOL.md``): 2 torch
    threads with OpenMP's default spinning took 12.1 s per step, with ``OMP_WAIT_POLICY=PASSIVE``
    1.44 s (1 thread: 1.28 s). OpenMP reads the variable when torch is first imported, so this only
    acts before that and never overrides a value the user set.
    """
    if device != "cuda" and "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def run_train(args: argparse.Namespace) -> int:
    from facenas.plugins.engine.config import load_train_config
    from facenas.utils.io import emit_json

    cfg = load_train_config(args.config, recipe_overrides(args))
    passive_openmp_on_cpu(cfg.device)
    from facenas.plugins.engine.trainer import train

    result = train(cfg)
    if args.json and result.rank == 0:
        emit_json({"output": result.output, "global_step": result.global_step, "stopped_early": result.stopped_early,
                   **result.metrics})
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a backbone from a recipe config (torchrun for DDP)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_arguments(p, "TrainConfig", resume="continue from OUTPUT/checkpoint.pt bit for bit",
                         output="output folder (default: the recipe's, or work_dirs/<recipe>)")
    p.set_defaults(handler=run_train)


def add_recipe_arguments(p: argparse.ArgumentParser, config_class: str, resume: str, output: str) -> None:
    """The arguments of a command that trains from a recipe: CONFIG, --resume, --overwrite, --output, --set, --json."""
    p.add_argument("config", help=f"recipe: a Python module assigning `config` ({config_class} or dict)")
    p.add_argument("--resume", action="store_true", help=resume)
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in the output folder (a fresh run refuses to by default)")
    p.add_argument("--output", help=output)
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a config field (repeatable)")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON line")


def recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields :func:`add_recipe_arguments`' options set (``--set``, resume, overwrite, output)."""
    overrides = _parse_set(args.set)
    if args.resume:
        overrides["resume"] = True
    if args.overwrite:
        overrides["overwrite"] = True
    if args.output:
        overrides["output"] = args.output
    return overrides
