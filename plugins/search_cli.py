"""``facenas methods`` and ``facenas search``: the installed methods, and one command to run any of them.

    facenas methods [--json]                                   # each method: spaces, stages, strategies, docs
    facenas search tnas recipes/configs/celeba299_tnas_search_cpu.py --output work_dirs/tnas_search
    facenas search tnas.train recipes/configs/celeba299_tnas_student_cpu.py --set arch=work_dirs/tnas_search
    facenas search enas --set config=recipes/configs/... --json
    facenas search random_search --params '{"space": "toy", "budget": 8}'   # a third-party method

``facenas search METHOD`` runs one of the method's trial stages locally, the same stage an NNI
pipeline runs as a trial (its default is the method's ``search_stage``; ``METHOD.STAGE`` or
``--stage STAGE`` picks another; options go after the positional arguments).
The stage's parameters are ``config`` (the positional recipe, optional), ``--params`` (a JSON
object) and ``--set FIELD=VALUE`` overrides (VALUE a Python literal, else a string). The stage
reports to ``--output`` (``metrics.jsonl``, ``final.json``); ``--resume`` sets ``resume=True`` for
the stages whose config has it (a killed search continues from its checkpoint).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

from facenas.errors import ConfigError

log = logging.getLogger(__name__)


def _registries() -> dict[str, Any]:
    from facenas.nas.space import SPACES
    from facenas.nas.stages import STAGES
    from facenas.nas.strategy import STRATEGIES

    return {"spaces": SPACES, "stages": STAGES, "strategies": STRATEGIES}


def run_methods_cmd(args: argparse.Namespace) -> int:
    from facenas.methods import describe
    from facenas.utils.io import emit_json

    rows = describe(_registries(), args.names or None)
    if args.json:
        emit_json(rows)
        return 0
    for row in rows:
        where = row["package"] + ("" if row["distribution"] == "facenas" else f" ({row['distribution']})")
        print(f"{row['name']}: {row['summary']}\n  package: {where}\n  docs: {row['docs'] or '-'}\n"
              f"  spaces: {', '.join(row['spaces']) or '-'}\n  stages: {', '.join(row['stages']) or '-'}"
              f" (default: {row['search_stage'] or '-'})\n  strategies: {', '.join(row['strategies']) or '-'}")
    return 0


def stage_of(method_name: str, stage: str | None) -> str:
    """The stage ``facenas search METHOD [--stage STAGE]`` runs (``train`` and ``tnas.train`` both work)."""
    from facenas.methods import describe, get_method
    from facenas.registry import UnknownNameError

    method = get_method(method_name)
    if not stage:
        if not method.spec.search_stage:
            raise ConfigError(f"method '{method_name}' declares no default search_stage; give --stage")
        return method.spec.search_stage
    name = stage if "." in stage else f"{method_name}.{stage}"
    owned = describe(_registries(), [method_name])[0]["stages"]
    if name not in owned:
        import difflib

        close = difflib.get_close_matches(name, owned, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"method '{method_name}' has no stage '{name}'{hint or '.'} Its stages: {', '.join(owned)}")
    return name


def search_params(config: str | None, params_json: str | None, sets: list[str] | None, resume: bool) -> dict[str, Any]:
    """A stage's parameters from the command line: recipe, then ``--params``, then ``--set``."""
    from facenas.plugins.engine.cli import _parse_set  # --set FIELD=VALUE, as `facenas train`

    params: dict[str, Any] = {}
    if config:
        if not os.path.isfile(config):
            raise ConfigError(f"{config}: no such recipe file")
        params["config"] = config
    if params_json:
        try:
            extra = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--params: not valid JSON ({exc}); expected an object such as '{{\"num_epoch\": 1}}'") from None
        if not isinstance(extra, dict):
            raise ConfigError(f"--params: expected a JSON object, got {type(extra).__name__}")
        params.update(extra)
    params.update(_parse_set(sets))
    if resume:
        params["resume"] = True
    return params


def run_search_cmd(args: argparse.Namespace) -> int:
    from facenas.nas.stages import run_stage_locally
    from facenas.utils.io import emit_json

    method, _, stage_name = args.method.partition(".")
    if stage_name and args.stage:
        raise ConfigError(f"give the stage once: '{args.method}' or --stage {args.stage}")
    stage = stage_of(method, args.stage or stage_name or None)
    params = search_params(args.config, args.params, args.set, args.resume)
    out = args.output
    if not out:
        stem = os.path.splitext(os.path.basename(args.config))[0] if args.config else stage.replace(".", "_")
        out = os.path.join("work_dirs", stem)
    log.info("facenas search %s: stage %s, output %s", args.method, stage, out)
    metrics = run_stage_locally(stage, params, out)
    if args.json:
        emit_json({"method": method, "stage": stage, "output": out, **metrics})
    else:
        print(f"{stage}: done; final metrics in {os.path.join(out, 'final.json')}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    m = subparsers.add_parser("methods", help="list the installed search methods: spaces, stages, strategies",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("names", nargs="*", help="only these methods")
    m.add_argument("--json", action="store_true", help="print a JSON list")
    m.set_defaults(handler=run_methods_cmd)

    s = subparsers.add_parser("search", help="run a method's search (or another of its stages) locally",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("method", help="an installed method (see `facenas methods`), or METHOD.STAGE for another of its stages")
    s.add_argument("config", nargs="?", help="recipe: the stage's `config` parameter (a Python module assigning `config`)")
    s.add_argument("--stage", help="the method's stage to run (default: its search stage), e.g. `train` or `tnas.train`")
    s.add_argument("--params", metavar="JSON", help="stage parameters as a JSON object")
    s.add_argument("--set", action="append", metavar="FIELD=VALUE", help="a stage parameter / config override (repeatable)")
    s.add_argument("--resume", action="store_true", help="continue a killed run from its checkpoint")
    s.add_argument("--output", help="output folder (default: work_dirs/<recipe name>)")
    s.add_argument("--json", action="store_true", help="print the final metrics as one JSON line")
    s.set_defaults(handler=run_search_cmd)
