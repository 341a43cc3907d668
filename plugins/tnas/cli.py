"""``facenas tnas search|train``: run a TNAS search or train a searched / uniform student locally.

    facenas train recipes/configs/celeba299_tnas_teacher_cpu.py             # 1. a teacher
    facenas tnas search recipes/configs/celeba299_tnas_search_cpu.py        # 2. the search -> arch.json
    facenas tnas train recipes/configs/celeba299_tnas_student_cpu.py        # 3. the derived student, by FKD
    facenas tnas train recipes/configs/celeba299_tnas_student_cpu.py --uniform-ratio 0.5 --output work_dirs/uniform
    facenas tnas train recipes/configs/celeba299_tnas_student_cpu.py --uniform-ratio 0.5 \\
        --distill-weight 0 --margin-weight 1 --output work_dirs/uniform_margin   # the no-teacher student

``--set FIELD=VALUE`` overrides a config field (VALUE a Python literal, else a string); ``--resume``
continues a killed run from its checkpoint; ``--json`` prints the final metrics as one JSON line.
A student recipe assigns ``config`` (a TrainConfig) and may assign ``arch`` (architecture JSON
path or dict), ``distill`` (DistillSettings fields) and ``space`` (the TnasSpace config, for
``--uniform-ratio``).
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
from typing import Any

from facenas.errors import ConfigError
from facenas.plugins.engine.cli import _parse_set  # --set FIELD=VALUE, as `facenas train`


def run_search_cmd(args: argparse.Namespace) -> int:
    from facenas.plugins.tnas.search import load_search_config, run_search
    from facenas.utils.io import emit_json

    overrides = _parse_set(args.set)
    if args.resume:
        overrides["resume"] = True
    if args.output:
        overrides["output"] = args.output
    cfg = load_search_config(args.config, overrides)
    if not cfg.output:
        cfg.output = os.path.join("work_dirs", os.path.splitext(os.path.basename(args.config))[0])
    result = run_search(cfg)
    if args.json:
        emit_json({"output": result.output, **result.metrics})
    return 0


def run_train_cmd(args: argparse.Namespace) -> int:
    from facenas.plugins.engine.config import load_train_config
    from facenas.plugins.tnas.distill import DistillSettings, resolve_arch, train_student, uniform_description
    from facenas.utils.io import emit_json

    if not os.path.isfile(args.config):
        raise ConfigError(f"{args.config}: no such recipe file")
    namespace = runpy.run_path(args.config)
    overrides = _parse_set(args.set)
    if args.resume:
        overrides["resume"] = True
    if args.output:
        overrides["output"] = args.output
    distill = dict(namespace.get("distill") or {})
    if args.teacher:
        distill["teacher"] = args.teacher
    if args.distill_weight is not None:
        distill["distill_weight"] = args.distill_weight
    if args.margin_weight is not None:
        distill["margin_weight"] = args.margin_weight
    settings = DistillSettings.from_dict(distill)
    if args.uniform_ratio is not None:
        space = json.loads(args.space) if args.space else namespace.get("space")
        if not isinstance(space, dict):
            raise ConfigError("--uniform-ratio needs the TnasSpace config: `space = {...}` in the recipe or --space JSON")
        arch: Any = uniform_description(space, args.uniform_ratio)
    else:
        arch = resolve_arch(args.arch or namespace.get("arch"))
        if not arch:
            raise ConfigError(f"{args.config} assigns no `arch`; give --arch (arch.json or a search folder) or "
                              "--uniform-ratio")
    cfg = load_train_config(args.config, overrides)
    os.makedirs(cfg.output, exist_ok=True)
    if isinstance(arch, dict):
        path = os.path.join(cfg.output, "arch.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(arch, fh, indent=2)
        arch = path
    cfg.network = str(arch)
    result = train_student(cfg, arch, settings)
    if args.json:
        emit_json({"output": result.output, **result.metrics})
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tnas", help="TNAS: teacher-guided width/depth search and FKD student training",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="tnas_command", metavar="COMMAND")
    s = sub.add_parser("search", help="run a TNAS search from a TnasSearchConfig recipe")
    s.add_argument("config", help="recipe: a Python module assigning `config` (TnasSearchConfig or dict)")
    t = sub.add_parser("train", help="train a searched or uniformly narrowed student by feature distillation")
    t.add_argument("config", help="recipe: a Python module assigning `config` (TrainConfig), optionally arch/distill/space")
    t.add_argument("--arch", help="architecture JSON or a tnas search output folder (default: the recipe's `arch`)")
    t.add_argument("--uniform-ratio", type=float, help="train the uniformly narrowed student at this width ratio")
    t.add_argument("--space", help="TnasSpace config as JSON (default: the recipe's `space`)")
    t.add_argument("--teacher", help="teacher checkpoint / .onnx (default: the recipe's distill['teacher'])")
    t.add_argument("--distill-weight", type=float, help="weight of the feature-distillation loss")
    t.add_argument("--margin-weight", type=float, help="weight of the recipe's margin loss (0: pure FKD)")
    for q, handler in ((s, run_search_cmd), (t, run_train_cmd)):
        q.add_argument("--resume", action="store_true", help="continue a killed run from its checkpoint")
        q.add_argument("--output", help="output folder")
        q.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a config field (repeatable)")
        q.add_argument("--json", action="store_true", help="print the final metrics as one JSON line")
        q.set_defaults(handler=handler)
