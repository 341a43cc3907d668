"""Must-show: Li-ArcFace vs plain ArcFace training a 128-d MobileFaceNet from scratch, same settings.

    python -m benchmarks.bench_li_arcface [--set num_epoch=10 ...]

AirFace (Sec. 3.1, 4.1) reports that ArcFace diverges (NaN) when training a 128-d MobileFaceNet
from scratch and needs N-Softmax pre-training, while Li-ArcFace converges. This runs the
CPU-scale protocol (recipe ``celeba299_mbf_cpu.py``: MobileFaceNet, 128-d, 64x64, SGD 0.1,
batch 64, s=64) three times, changing only the head:

* ``li_arcface`` -- Li-ArcFace, m = 0.45 (textbook gradient, its default);
* ``arcface_textbook`` -- ArcFace, m = 0.5, gradient of the formula (as the AirFace authors' MXNet code);
* ``arcface_torch`` -- ArcFace, m = 0.5, arcface_torch's no_grad margin.

Each record says whether the loss became NaN/inf (and at which step) and the LFW accuracy
otherwise. The ``arcface_torch`` variant is exactly the ``mbf`` baseline of
``bench_baselines`` (same recipe, same seed); unless asked to run it (``--only ...
arcface_torch``) its row is taken from ``benchmarks/results/bench_baselines.json`` to save an
hour of CPU. Results: ``benchmarks/results/bench_li_arcface.json``.
"""
from __future__ import annotations

import os

# before torch is imported: idle OpenMP threads sleep instead of spinning (shared machine, see PROTOCOL.md)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import time
from pathlib import Path

import torch

from benchmarks._common import RESULTS_DIR as RESULTS
from benchmarks._common import save_result
from benchmarks.bench_baselines import RECIPES, _overrides
from facenas.plugins.engine import TrainingDivergedError, load_train_config, train
from facenas.utils.io import read_json
from facenas.utils.log import setup_logging

VARIANTS = {
    "li_arcface": {"margin_head": "li_arcface", "margin_list": (1.0, 0.45, 0.0), "margin_grad": "textbook"},
    "arcface_textbook": {"margin_head": "combined", "margin_list": (1.0, 0.5, 0.0), "margin_grad": "textbook"},
    "arcface_torch": {"margin_head": "combined", "margin_list": (1.0, 0.5, 0.0), "margin_grad": "arcface_torch"},
}


#: override fields that do not change what is trained (where it is written, CPU threads)
NEUTRAL_FIELDS = ("output", "threads", "num_workers")


def _training_overrides(overrides: dict) -> dict:
    return {k: v for k, v in overrides.items() if k not in NEUTRAL_FIELDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=["li_arcface", "arcface_textbook"], choices=list(VARIANTS),
                        help="variants to train now (none: only merge recorded rows and the baseline)")
    parser.add_argument("--out", default="work_dirs/bench_li_arcface")
    parser.add_argument("--set", action="append", metavar="FIELD=VALUE")
    args = parser.parse_args()
    setup_logging(0)
    torch.set_num_threads(2)
    overrides = _overrides(args.set)
    rows = {}
    for name in args.only:
        cfg = load_train_config(RECIPES / "celeba299_mbf_cpu.py",
                                {**VARIANTS[name], "output": str(Path(args.out) / name), "overwrite": True,
                                 **overrides})
        t0 = time.monotonic()
        try:
            result = train(cfg)
            rows[name] = {"nan": False, "lfw_acc": result.metrics.get("lfw_acc"),
                          "lfw_acc_std": result.metrics.get("lfw_acc_std"),
                          "best_lfw_devtest_acc": result.metrics.get("best_lfw_devtest_acc"),
                          "final_loss": result.metrics.get("loss"), "global_step": result.global_step,
                          "train_minutes": round(result.train_seconds / 60, 2)}
        except TrainingDivergedError as exc:
            rows[name] = {"nan": True, "message": str(exc)}
        rows[name].update({"head": VARIANTS[name], "wall_minutes": round((time.monotonic() - t0) / 60, 2),
                           "config": cfg.to_dict()})
    previous = RESULTS / "bench_li_arcface.json"
    if previous.is_file():  # keep variants recorded earlier with the same recipe and settings
        old = read_json(previous)["result"]
        if _training_overrides(old.get("overrides") or {}) == _training_overrides(overrides):
            for name, row in old.get("runs", {}).items():
                rows.setdefault(name, row)
    baseline = RESULTS / "bench_baselines.json"
    if "arcface_torch" not in rows and baseline.is_file():
        result = read_json(baseline)["result"]
        run = result["runs"].get("mbf")
        if run and _training_overrides(result.get("overrides") or {}) == _training_overrides(overrides):
            rows["arcface_torch"] = {"nan": False, "lfw_acc": run["lfw_acc"], "lfw_acc_std": run["lfw_acc_std"],
                                     "best_lfw_devtest_acc": run["best_lfw_devtest_acc"],
                                     "global_step": run["global_step"], "train_minutes": run["train_minutes"],
                                     "head": VARIANTS["arcface_torch"], "source": str(baseline.name) + " (mbf)"}
    save_result("bench_li_arcface", {"recipe": "recipes/configs/celeba299_mbf_cpu.py", "overrides": overrides,
                                     "runs": rows})


if __name__ == "__main__":
    main()
