"""CPU-scale hand-designed baselines on celeba299 -> LFW (benchmarks/PROTOCOL.md), one command.

    python -m benchmarks.bench_baselines [--only mbf r18 airface]
        [--artifacts DIR] [--set num_epoch=40 ...]

Trains each recipe ``recipes/configs/celeba299_<name>_cpu.py`` with the real data pipeline and
the facenas trainer (2 threads, 60-minute cap per run), then records for each: the recipe and
its resolved config, MFLOPs / parameters at 64x64, LFW accuracy (10 folds, flip) of the last and
of the best-on-lfw_devtest model, training and wall time, epochs done and whether the budget cut
the run short. Results: ``benchmarks/results/bench_baselines.json`` (with ``--tag T``:
``bench_baselines_T.json``). ``--artifacts DIR`` copies each run's ``best.pt`` / ``last.pt`` /
``final.json`` / ``config.json`` to ``DIR/<recipe>/`` for other methods (teachers, comparisons).
"""
from __future__ import annotations

import os

# before torch is imported: idle OpenMP threads sleep instead of spinning (shared machine, see PROTOCOL.md)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import ast
import logging
import shutil
import time
from pathlib import Path

import torch

from benchmarks._common import save_result
from facenas.plugins.engine import build_backbone, load_train_config, train
from facenas.nas.flops import count_flops, count_params
from facenas.utils.log import setup_logging

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "configs"
NAMES = ("mbf", "r18", "airface")


def _overrides(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        key, text = item.split("=", 1)
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def run_one(name: str, out_root: Path, overrides: dict, artifacts: Path | None) -> dict:
    recipe = RECIPES / f"celeba299_{name}_cpu.py"
    cfg = load_train_config(recipe, {"output": str(out_root / recipe.stem), "overwrite": True,  # a re-run replaces
                                     **overrides})
    size = cfg.input_size()
    probe = build_backbone(cfg).eval()
    mflops, params = count_flops(probe, (1, 3, size, size)) / 1e6, count_params(probe) / 1e6
    load_before = os.getloadavg()
    t0 = time.monotonic()
    result = train(cfg)
    wall = time.monotonic() - t0
    m = result.metrics
    row = {
        "recipe": str(recipe.relative_to(RECIPES.parents[1])),
        "network": cfg.network, "network_kwargs": cfg.network_kwargs, "input_size": size,
        "mflops": round(mflops, 2), "params_m": round(params, 4),
        "lfw_acc": m.get("lfw_acc"), "lfw_acc_std": m.get("lfw_acc_std"),
        "lfw_tar_at_far_1e-3": m.get("lfw_tar_at_far_1e-3"), "lfw_auc": m.get("lfw_auc"),
        "best_model_lfw_acc": m.get("best_lfw_acc", m.get("lfw_acc")),
        "best_lfw_devtest_acc": m.get("best_lfw_devtest_acc"), "best_step": m.get("best_step"),
        "lfw_devtest_acc_last": m.get("lfw_devtest_acc"),
        "train_minutes": round(result.train_seconds / 60, 2), "wall_minutes": round(wall / 60, 2),
        "epochs": result.epochs, "global_step": result.global_step, "stopped_by_budget": result.stopped_early,
        "budget_minutes": cfg.max_minutes, "config": cfg.to_dict(), "output": result.output,
        # the machine is shared: other sessions' (unlocked) tests slow the run down
        "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    if artifacts is not None:
        dest = artifacts / recipe.stem
        dest.mkdir(parents=True, exist_ok=True)
        for f in ("best.pt", "last.pt", "final.json", "config.json", "train_metrics.jsonl"):
            if (Path(result.output) / f).is_file():
                shutil.copy2(Path(result.output) / f, dest / f)
        row["artifacts"] = str(dest)
    logging.getLogger("bench_baselines").info("%s: %s", name, {k: row[k] for k in ("lfw_acc", "train_minutes")})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(NAMES), choices=NAMES)
    parser.add_argument("--out", default="work_dirs/bench_baselines", help="training output root")
    parser.add_argument("--artifacts", help="copy checkpoints to DIR/<recipe>/")
    parser.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a config field for all runs")
    parser.add_argument("--tag", help="suffix of the result file")
    args = parser.parse_args()
    setup_logging(0)
    torch.set_num_threads(2)
    overrides = _overrides(args.set)
    rows = {name: run_one(name, Path(args.out), overrides, Path(args.artifacts) if args.artifacts else None)
            for name in args.only}
    best = max(rows, key=lambda n: rows[n]["lfw_acc"] or 0.0)
    save_result("bench_baselines" + (f"_{args.tag}" if args.tag else ""),
                {"protocol": "benchmarks/PROTOCOL.md", "overrides": overrides, "runs": rows, "best": best,
                 "goal_lfw_acc": 0.80, "goal_met": (rows[best]["lfw_acc"] or 0.0) >= 0.80})


if __name__ == "__main__":
    main()
