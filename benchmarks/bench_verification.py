"""Vectorised verification metrics vs a faithful re-run of arcface_torch's threshold loops, LFW size.

One command (from the repo root, under the heavy-work lock)::

    python -m benchmarks.bench_verification [--pairs 6000] [--rounds 2]

On 12,000 embeddings (6,000 pairs in LFW View 2 order: 10 folds x 300 same + 300 different,
512-d, seeded), it times :func:`facenas.adapters.insightface.verification.evaluate` (accuracy,
ROC, TAR@FAR=1e-3, AUC, EER) against :func:`benchmarks.reference_verification.reference_evaluate`,
which repeats the reference algorithm loop by loop (``calculate_roc`` + ``calculate_val``: one
boolean-mask pass per threshold and fold, 400 + 4,000 thresholds x 10 folds), and checks that
per-fold accuracies, mean TPR/FPR and TAR@FAR are bit-identical. Timings are interleaved (best
of each side). Saves
``benchmarks/results/bench_verification.json``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._common import save_result
from benchmarks.reference_verification import reference_evaluate
from facenas.adapters.insightface.verification import evaluate, normalize_rows


def lfw_sized_embeddings(n_pairs: int, dim: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    issame = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], n_pairs // 600 + 1)[:n_pairs]
    a = rng.normal(size=(n_pairs, dim))
    noise = rng.uniform(0.5, 6.0, size=(n_pairs, 1))  # same pairs from very close to hard (LFW-like accuracy)
    b = np.where(issame[:, None], a + noise * rng.normal(size=(n_pairs, dim)),
                 rng.uniform(0, 0.1, size=(n_pairs, 1)) * a + rng.normal(size=(n_pairs, dim)))
    emb = np.empty((2 * n_pairs, dim), np.float32)
    emb[0::2], emb[1::2] = a, b
    return normalize_rows(emb), issame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (3 vectorised runs + 1 reference run each)")
    args = parser.parse_args()
    emb, issame = lfw_sized_embeddings(args.pairs)

    ref_times, ours_times = [], []
    ref = ours = None
    for _ in range(args.rounds):  # interleaved, so both sides see the same machine load
        for _ in range(3):
            t0 = time.perf_counter()
            ours = evaluate(emb, issame)
            ours_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = reference_evaluate(emb, issame)
        ref_times.append(time.perf_counter() - t0)
    identical = {
        "fold_accuracies": bool(np.array_equal(ref["fold_accuracies"], np.asarray(ours.fold_accuracies))),
        "tpr_fpr": bool(np.array_equal(ref["tpr"], ours.tpr) and np.array_equal(ref["fpr"], ours.fpr)),
        "tar_at_far": ours.tar_at_far == ref["tar_at_far"] and ours.tar_std == ref["tar_std"] and ours.far == ref["far"],
    }
    result = {
        "embeddings": int(emb.shape[0]), "dim": int(emb.shape[1]), "pairs": int(issame.size),
        "reference_seconds": round(min(ref_times), 4), "vectorised_seconds": round(min(ours_times), 5),
        "speedup": round(min(ref_times) / min(ours_times), 1), "goal_speedup": 50.0,
        "bit_identical": identical, "all_bit_identical": all(identical.values()),
        "accuracy": ours.accuracy, "accuracy_std": ours.accuracy_std, "fold_accuracies": ours.fold_accuracies,
        "tar_at_far_1e-3": ours.tar_at_far, "auc": ours.auc, "eer": ours.eer,
        "note": "reference = benchmarks/reference_verification.py, the arcface_torch loops re-run with sklearn KFold "
                "and SciPy's BSpline built as SciPy<=1.8's slinear interp1d (SciPy>=1.9 raises on repeated FAR values)",
    }
    save_result("bench_verification", result, load_average=True)


if __name__ == "__main__":
    main()
