"""TNAS Table 3 at CPU scale: a TNAS-searched student vs the uniformly narrowed student of the same FLOPs,
both distilled (FKD) from the same teacher under the same budget, plus the no-teacher margin-loss
student; LFW accuracy (lfw.bin, 10 folds) for each. One command, resumable step by step:

    python -m benchmarks.bench_tnas_table3 [--artifacts DIR (default $FACENAS_ARTIFACTS/tnas)]
        [--only teacher search tnas_fkd uniform_fkd uniform_margin] [--search-set FIELD=VALUE] [--train-set FIELD=VALUE]

Steps (each skipped when ``<artifacts>/<step>/final.json`` exists; a killed step resumes):

1. ``teacher`` -- ``recipes/configs/celeba299_tnas_teacher_cpu.py``: r18 at half width (the
   student space's full-width network), the CPU-scale protocol (benchmarks/PROTOCOL.md);
2. ``search`` -- ``recipes/configs/celeba299_tnas_search_cpu.py``: TNAS on that space, target =
   the FLOPs of the uniform ratio-0.5 student, distilled from ``teacher/best.pt``;
3. ``tnas_fkd`` -- the derived architecture, trained from scratch by FKD (protocol, 20 epochs);
4. ``uniform_fkd`` -- every width at ratio 0.5 (= arcface_torch r18 at quarter width), FKD, same budget;
5. ``uniform_margin`` -- the same uniform network, ArcFace margin loss only, no teacher (the paper's "AM").

All students use the same seed, batches and flips; the teacher's embeddings are cached once in
``<artifacts>/teacher_cache.pt`` and shared. Result: ``benchmarks/results/bench_tnas_table3.json``.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import artifacts_dir, save_result
from benchmarks.bench_baselines import _overrides
from facenas.plugins.engine import build_backbone, load_train_config, train
from facenas.nas.flops import count_flops, count_params
from facenas.plugins.tnas.distill import DistillSettings, train_student, uniform_description
from facenas.plugins.tnas.search import load_search_config, run_search
from facenas.utils.io import read_json, write_json
from facenas.utils.log import setup_logging

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "configs"
STEPS = ("teacher", "search", "tnas_fkd", "uniform_fkd", "uniform_margin")
UNIFORM_RATIO = 0.5
log = logging.getLogger("bench_tnas_table3")
#: lfw.bin metrics kept next to the accuracy in every training row
VERIFICATION_EXTRAS = ("lfw_tar_at_far_1e-3", "lfw_tar_at_far_1e-3_std", "lfw_auc", "lfw_eer")


def _done(step_dir: Path) -> dict[str, Any] | None:
    """The step's ``final.json``; its row gets the lfw.bin extras from the step's metrics when it
    was written without them (rows of runs recorded before the extras were kept)."""
    f = step_dir / "final.json"
    if not f.is_file():
        return None
    done = read_json(f)
    row = done.get("row", {})
    for key in VERIFICATION_EXTRAS:
        if row.get(key) is None and done.get(key) is not None:
            row[key] = done[key]
    return done


def _train_row(metrics: dict[str, Any], cfg: Any, wall: float) -> dict[str, Any]:
    return {
        "mflops": round(metrics.get("mflops", 0.0), 3), "params_m": round(metrics.get("params_m", 0.0), 4),
        "lfw_acc": metrics.get("lfw_acc"), "lfw_acc_std": metrics.get("lfw_acc_std"),
        **{k: metrics.get(k) for k in VERIFICATION_EXTRAS},
        "best_model_lfw_acc": metrics.get("best_lfw_acc", metrics.get("lfw_acc")),
        "best_lfw_devtest_acc": metrics.get("best_lfw_devtest_acc"), "lfw_devtest_acc_last": metrics.get("lfw_devtest_acc"),
        "train_minutes": round(metrics.get("train_seconds", 0.0) / 60, 2), "wall_minutes": round(wall / 60, 2),
        "epochs": metrics.get("epochs"), "budget_minutes": cfg.max_minutes, "num_epoch": cfg.num_epoch,
        "stopped_by_budget": metrics.get("epochs", cfg.num_epoch) < cfg.num_epoch, "seed": cfg.seed,
    }


def run_teacher(art: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    out = art / "teacher"
    recipe = RECIPES / "celeba299_tnas_teacher_cpu.py"
    cfg = load_train_config(recipe, {"output": str(out), **overrides,
                                     **({"resume": True} if (out / "checkpoint.pt").is_file() else {})})
    size = cfg.input_size()
    probe = build_backbone(cfg).eval()
    t0 = time.monotonic()
    result = train(cfg)
    metrics = dict(result.metrics)
    metrics.update(mflops=count_flops(probe, (1, 3, size, size)) / 1e6, params_m=count_params(probe) / 1e6)
    row = {"recipe": str(recipe.relative_to(ROOT)), "network": "r18 width 0.5", **_train_row(metrics, cfg, time.monotonic() - t0)}
    write_json(out / "final.json", {**metrics, "row": row})
    return row


def run_search_step(art: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    out = art / "search"
    recipe = RECIPES / "celeba299_tnas_search_cpu.py"
    cfg = load_search_config(str(recipe), {"output": str(out), "teacher": str(art / "teacher" / "best.pt"),
                                           "teacher_cache_file": str(art / "teacher_cache.pt"), **overrides,
                                           **({"resume": True} if (out / "checkpoint.pt").is_file() else {})})
    t0 = time.monotonic()
    res = run_search(cfg)
    m, h = res.metrics, res.history
    row = {
        "recipe": str(recipe.relative_to(ROOT)), "target_mflops": m["target_mflops"], "derived_mflops": m["mflops"],
        "within_tolerance": m["within_tolerance"], "argmax_mflops": m["argmax_mflops"],
        "argmax_within_tolerance": m["argmax_within_tolerance"], "repair_moves": m["repair_moves"],
        "depths": m["depths"], "stem_width": m["stem_width"], "stage_widths": m["stage_widths"],
        "inner_widths": m["inner_widths"], "params_m": m["params_m"], "epochs": m["epochs"],
        "search_minutes": round(m["train_seconds"] / 60, 2), "wall_minutes": round((time.monotonic() - t0) / 60, 2),
        "per_epoch": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items() if k != "arch"} for e in h],
        "config": cfg.to_dict(),
    }
    write_json(out / "final.json", {**m, "row": row})
    return row


def run_student(art: Path, name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    out = art / name
    recipe = RECIPES / "celeba299_tnas_student_cpu.py"
    space = read_json(art / "search" / "config.json")["space"] if (art / "search" / "config.json").is_file() else \
        {"base": "r18", "width_mult": 0.5, "input_size": 64, "embedding_size": 128}
    if name == "tnas_fkd":
        arch: Any = str(art / "search" / "arch.json")
        settings = DistillSettings(teacher=str(art / "teacher" / "best.pt"),
                                   teacher_cache_file=str(art / "teacher_cache.pt"))
    else:
        out.mkdir(parents=True, exist_ok=True)
        arch = str(out / "arch.json")
        write_json(arch, uniform_description(space, UNIFORM_RATIO))
        settings = DistillSettings(teacher=str(art / "teacher" / "best.pt"), teacher_cache_file=str(art / "teacher_cache.pt")) \
            if name == "uniform_fkd" else DistillSettings(distill_weight=0.0, margin_weight=1.0)
    cfg = load_train_config(recipe, {"output": str(out), "network": arch, **overrides,
                                     **({"resume": True} if (out / "checkpoint.pt").is_file() else {})})
    t0 = time.monotonic()
    result = train_student(cfg, arch, settings)
    metrics = dict(result.metrics)
    row = {"arch": arch, "distill_weight": settings.distill_weight, "margin_weight": settings.margin_weight,
           **_train_row(metrics, cfg, time.monotonic() - t0),
           "teacher_images_computed": metrics.get("teacher_images_computed")}
    write_json(out / "final.json", {**metrics, "row": row})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default=str(artifacts_dir("tnas")), help="where checkpoints and step outputs go")
    parser.add_argument("--only", nargs="*", default=list(STEPS), choices=STEPS)
    parser.add_argument("--search-set", action="append", metavar="FIELD=VALUE", help="override a search config field")
    parser.add_argument("--train-set", action="append", metavar="FIELD=VALUE",
                        help="override a training config field (teacher and students)")
    parser.add_argument("--tag", help="suffix of the result file")
    args = parser.parse_args()
    setup_logging(0)
    torch.set_num_threads(2)
    art = Path(args.artifacts)
    art.mkdir(parents=True, exist_ok=True)
    train_over, search_over = _overrides(args.train_set), _overrides(args.search_set)
    rows: dict[str, Any] = {}
    for step in STEPS:
        done = _done(art / step)
        if done is not None:
            rows[step] = done["row"]
            log.info("%s: done before (%s)", step, art / step / "final.json")
            continue
        if step not in args.only:
            continue
        log.info("%s: running", step)
        if step == "teacher":
            rows[step] = run_teacher(art, train_over)
        elif step == "search":
            rows[step] = run_search_step(art, search_over)
        else:
            rows[step] = run_student(art, step, train_over)
    table = [{"method": name, "mflops": rows[name].get("mflops"), "lfw_acc": rows[name].get("lfw_acc"),
              "lfw_acc_std": rows[name].get("lfw_acc_std"),
              "lfw_tar_at_far_1e-3": rows[name].get("lfw_tar_at_far_1e-3"), "best_model_lfw_acc": rows[name].get("best_model_lfw_acc")}
             for name in ("teacher", "uniform_margin", "uniform_fkd", "tnas_fkd") if name in rows]
    save_result("bench_tnas_table3" + (f"_{args.tag}" if args.tag else ""), {
        "protocol": "benchmarks/PROTOCOL.md", "artifacts": str(art), "train_overrides": train_over,
        "search_overrides": search_over, "uniform_ratio": UNIFORM_RATIO, "table": table, "steps": rows})


if __name__ == "__main__":
    main()
