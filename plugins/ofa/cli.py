"""``facenas ofa train CONFIG``: progressive-shrinking supernet training from a recipe (also under ``torchrun``).

    facenas ofa train my_supernet.py --output work_dirs/ofa_supernet
    facenas ofa train my_supernet.py --output work_dirs/ofa_supernet --resume       # continue a killed run
    facenas ofa train my_supernet.py --output work_dirs/ofa_supernet --overwrite    # replace the run there
    torchrun --nnodes=2 --nproc_per_node=1 --node_rank=R --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT \\
        -m facenas.cli ofa train my_supernet.py --output /shared/ofa_supernet        # DDP over two nodes

A recipe is a Python module assigning ``config`` (a ``SupernetTrainConfig`` or a dict of its fields);
``--set FIELD=VALUE`` overrides a field (VALUE a Python literal, else a string). Under DDP the
sharded PartialFC needs ``kd_type='embedding'`` (or ``kd_ratio=0``). With ``--json`` rank 0 prints the
final metrics as the last line of stdout.
"""
from __future__ import annotations

import argparse
import os

from facenas.plugins.engine.cli import add_recipe_arguments, passive_openmp_on_cpu, recipe_overrides


def run_train_cmd(args: argparse.Namespace) -> int:
    from facenas.config import load_config_module
    from facenas.plugins.ofa.train import SupernetTrainConfig
    from facenas.utils.io import emit_json

    cfg = load_config_module(args.config, SupernetTrainConfig)
    overrides = recipe_overrides(args)
    if overrides:
        cfg = SupernetTrainConfig.from_dict({**cfg.to_dict(), **overrides}, source=f"{args.config} (overrides)")
    passive_openmp_on_cpu(cfg.device)
    from facenas.plugins.ofa.train import train_supernet

    result = train_supernet(cfg)
    if args.json and os.environ.get("RANK", "0") == "0":  # torchrun's rank; only rank 0 answers
        emit_json({"output": result.output, "global_step": result.global_step, "stopped_early": result.stopped_early,
                   **{k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str))}})
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ofa", help="OFA supernet training from a recipe (torchrun for DDP)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="ofa_command", metavar="ACTION")
    q = sub.add_parser("train", help="train a supernet by progressive shrinking", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_arguments(q, "SupernetTrainConfig", resume="continue from OUTPUT's checkpoint(s)",
                         output="output folder (default: the recipe's)")
    q.set_defaults(handler=run_train_cmd)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])
