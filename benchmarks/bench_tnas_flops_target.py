"""Does a TNAS search land on its FLOPs target? Test-scale searches over seeds and targets, one command.

    python -m benchmarks.bench_tnas_flops_target [--seeds 0 1 2] [--ratios 0.4 0.6 0.8]

Each run is the test-scale search of ``tests/tnas/test_search.py`` (the ``TEST_SPACE`` IResNet at
32x32, synthetic identities of the data layer, a BN-calibrated random r18 teacher, 14 epochs of
7 iterations, Adam lr 0.1 on the architecture) with the target R = the FLOPs of the uniformly
narrowed network at the given width ratio. Recorded per run: R, the expected FLOPs at the start
and the end, the argmax architecture's FLOPs (the paper's derivation) and whether it is within
(1 +- t) R, the derived architecture (``argmax_in_budget``) and its repair moves, and the share
of the last epoch's iterations whose argmax was within the band. Result:
``benchmarks/results/bench_tnas_flops_target.json``.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import save_result
from facenas.adapters.insightface.synthetic import SyntheticConfig, write_synthetic_dataset
from facenas.plugins.tnas.search import TnasSearchConfig, run_search
from facenas.plugins.tnas.space import TEST_SPACE
from facenas.utils.log import setup_logging

TEACHER = {"random": "r18", "kwargs": {"num_features": 16, "width_mult": 0.25, "input_size": 32}, "seed": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--ratios", type=float, nargs="*", default=[0.4, 0.6, 0.8])
    parser.add_argument("--epochs", type=int, default=14)
    args = parser.parse_args()
    setup_logging(-1)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synthetic"
        write_synthetic_dataset(data, SyntheticConfig(num_identities=24, images_per_identity=10, val_identities=20,
                                                      val_pairs=120, seed=0))
        for ratio in args.ratios:
            for seed in args.seeds:
                cfg = TnasSearchConfig(space=dict(TEST_SPACE), teacher=TEACHER, rec=str(data), batch_size=16,
                                       num_epoch=args.epochs, target_width_ratio=ratio, arch_lr=0.1,
                                       output=str(Path(tmp) / f"r{ratio}_s{seed}"), seed=seed, device="cpu")
                t0 = time.monotonic()
                res = run_search(cfg)
                m, h = res.metrics, res.history
                rows.append({
                    "target_width_ratio": ratio, "seed": seed, "target_mflops": m["target_mflops"],
                    "expected_mflops_epoch1": h[0]["expected_mflops"], "expected_mflops_last": h[-1]["expected_mflops"],
                    "argmax_mflops": m["argmax_mflops"], "argmax_within_tolerance": m["argmax_within_tolerance"],
                    "derived_mflops": m["mflops"], "derived_within_tolerance": m["within_tolerance"],
                    "repair_moves": m["repair_moves"], "last_epoch_frac_within": h[-1].get("frac_within"),
                    "arch_entropy_norm_last": h[-1]["arch_entropy_norm"], "seconds": round(time.monotonic() - t0, 1),
                })
                logging.getLogger("bench").warning("%s", rows[-1])
    n = len(rows)
    save_result("bench_tnas_flops_target", {
        "setup": {"space": TEST_SPACE, "teacher": TEACHER, "epochs": args.epochs, "iterations_per_epoch": 7,
                  "batch_size": 16, "arch_lr": 0.1, "tolerance": 0.05, "cost_below": "neg_log", "threads": 1},
        "runs": rows,
        "argmax_within": sum(r["argmax_within_tolerance"] for r in rows), "derived_within": sum(
            r["derived_within_tolerance"] for r in rows), "runs_total": n,
        "mean_abs_argmax_error": sum(abs(r["argmax_mflops"] / r["target_mflops"] - 1) for r in rows) / n,
    })


if __name__ == "__main__":
    main()
