"""Face verification metrics with the semantics of arcface_torch's ``eval/verification.py``, vectorised.

Protocol (as InsightFace evaluates LFW / CFP / AgeDB ``.bin`` sets):

- embeddings of pair ``i`` are rows ``2i`` and ``2i+1``; with flip-test, each embedding is the sum
  of the image's and its horizontal flip's embeddings; embeddings are L2-normalised;
- the distance is the squared L2 distance; a pair is predicted "same" when ``dist < threshold``;
- accuracy: 10 folds in file order (``KFold(10, shuffle=False)``); on each fold the threshold of
  the grid ``arange(0, 4, 0.01)`` with the best accuracy on the other 9 folds (first maximum) is
  applied to the held-out fold; ``accuracy`` is the mean over folds, ``std`` their std;
- TAR@FAR=1e-3 (``val``): per fold, the threshold giving FAR = 1e-3 on the 9 training folds is
  interpolated on the grid ``arange(0, 4, 0.001)`` and applied to the held-out fold.

The reference computes each threshold's confusion counts with a Python loop (400 + 4,000
thresholds x 10 folds); here the counts of all thresholds come from one ``searchsorted`` over
the sorted distances, with the same float arithmetic, so per-fold accuracies are bit-identical.

TAR@FAR interpolation: the reference calls ``scipy.interpolate.interp1d(far, thresholds,
kind="slinear")``. ``far`` repeats values (it is a step function of the threshold), which SciPy
>= 1.9 rejects ("Expect x to not have duplicates", InsightFace issue #2152). SciPy <= 1.8 built
a degree-1 B-spline directly on the stably sorted points, ``t = [x0, x0..xn, xn]`` with
coefficients ``y`` and evaluated it with de Boor's rule; :func:`slinear_interp` repeats those
float operations in the same order, so TAR@FAR is what the reference printed before SciPy 1.9.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from facenas.errors import ModelDivergedError

ACC_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)


@dataclasses.dataclass
class VerificationResult:
    """Metrics of one verification set (named fields, no tuples)."""

    accuracy: float  # mean of fold accuracies
    accuracy_std: float
    fold_accuracies: list[float]
    tar_at_far: float  # "val" at FAR = far_target, mean over folds
    tar_std: float
    far: float  # achieved FAR, mean over folds
    auc: float
    eer: float
    best_thresholds: list[float]
    tpr: np.ndarray = dataclasses.field(repr=False)
    fpr: np.ndarray = dataclasses.field(repr=False)

    def to_dict(self, prefix: str = "") -> dict[str, Any]:
        p = f"{prefix}_" if prefix else ""
        return {
            f"{p}acc": self.accuracy,
            f"{p}acc_std": self.accuracy_std,
            f"{p}tar_at_far_1e-3": self.tar_at_far,
            f"{p}tar_at_far_1e-3_std": self.tar_std,
            f"{p}far": self.far,
            f"{p}auc": self.auc,
            f"{p}eer": self.eer,
        }


def kfold_indices(n: int, n_folds: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
    """``sklearn.model_selection.KFold(n_folds, shuffle=False)`` splits of ``range(n)``."""
    if n_folds <= 1:
        idx = np.arange(n)
        return [(idx, idx)]
    sizes = np.full(n_folds, n // n_folds, dtype=int)
    sizes[: n % n_folds] += 1
    out, start = [], 0
    for size in sizes:
        test = np.arange(start, start + size)
        train = np.concatenate([np.arange(0, start), np.arange(start + size, n)])
        out.append((train, test))
        start += size
    return out


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows like ``sklearn.preprocessing.normalize`` (dtype kept; zero rows stay zero)."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0.0] = 1.0
    return x / norms[:, None]


def pair_distances(embeddings: np.ndarray) -> np.ndarray:
    """Squared L2 distance of each pair (rows 2i, 2i+1), computed as the reference does."""
    e1, e2 = embeddings[0::2], embeddings[1::2]
    diff = np.subtract(e1, e2)
    return np.sum(np.square(diff), 1)


def _counts(dist: np.ndarray, issame: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """True and false accepts (``dist < t``) of every threshold, plus the same/different totals."""
    same = np.sort(dist[issame])
    diff = np.sort(dist[~issame])
    tp = np.searchsorted(same, thresholds, side="left")
    fp = np.searchsorted(diff, thresholds, side="left")
    return tp, fp, same.size, diff.size


def _accuracy_stats(dist: np.ndarray, issame: np.ndarray, thresholds: np.ndarray):
    tp, fp, n_same, n_diff = _counts(dist, issame, thresholds)
    fn, tn = n_same - tp, n_diff - fp
    # float(tp) / float(tp + fn) etc., elementwise in float64 exactly as the reference
    tpr = np.where(tp + fn == 0, 0.0, tp / np.maximum(tp + fn, 1))
    fpr = np.where(fp + tn == 0, 0.0, fp / np.maximum(fp + tn, 1))
    acc = (tp + tn) / dist.size
    return tpr, fpr, acc


def slinear_interp(x: np.ndarray, y: np.ndarray, x_new: float) -> float:
    """``scipy.interpolate.interp1d(x, y, kind='slinear')(x_new)`` as SciPy <= 1.8 computed it.

    SciPy 1.8.1's ``interp1d`` sorts ``x`` stably (``argsort(kind="mergesort")``) and calls
    ``make_interp_spline(x, y, k=1)``, which (with no duplicate check) returns the degree-1
    B-spline with knots ``t = r_[x[0], x, x[-1]]`` and coefficients ``y``. Evaluation
    (``_bspl.evaluate_spline``) finds the knot interval ``t[l] <= x_new < t[l+1]`` like
    ``find_interval`` (clamped to ``k <= l <= n-1``) and runs de Boor's recursion
    (``_deBoor_D``): ``w = 1/(t[l+1]-t[l])``, ``h0 = w*(t[l+1]-x_new)``, ``h1 = w*(x_new-t[l])``,
    value ``= (0 + c[l-1]*h0) + c[l]*h1``; an empty span (``x_new`` at a repeated maximum)
    gives both weights 0. The same operations in the same order give bit-identical results.
    ``x_new`` outside ``[min(x), max(x)]`` raises, as interp1d's default ``bounds_error``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs, c = x[order], y[order]
    x_new = float(x_new)
    if x_new < xs[0] or x_new > xs[-1]:
        raise ValueError(f"A value ({x_new}) in x_new is outside the interpolation range [{xs[0]}, {xs[-1]}].")
    t = np.r_[xs[0], xs, xs[-1]]
    n = c.size
    l = int(np.searchsorted(t, x_new, side="right")) - 1
    l = min(max(l, 1), n - 1)
    xa, xb = float(t[l]), float(t[l + 1])
    if xb == xa:  # _deBoor_D: h[1] = 0 and h[0] stays 0
        return 0.0
    w = 1.0 / (xb - xa)
    h0 = w * (xb - x_new)
    h1 = w * (x_new - xa)
    return (0.0 + float(c[l - 1]) * h0) + float(c[l]) * h1


def _val_far(dist: np.ndarray, issame: np.ndarray, threshold: float) -> tuple[float, float]:
    """TAR and FAR at ``threshold``; NaN where a fold has no same (or no different) pairs.

    The reference divides by zero there (files whose pairs are sorted by class, such as LFW
    View 1's ``pairsDevTest`` = ``lfw_devtest.bin``, give class-pure folds); such folds are left
    out of the TAR (FAR) mean instead.
    """
    predict = np.less(dist, threshold)
    ta = np.sum(np.logical_and(predict, issame))
    fa = np.sum(np.logical_and(predict, np.logical_not(issame)))
    n_same, n_diff = np.sum(issame), np.sum(np.logical_not(issame))
    val = float(ta) / float(n_same) if n_same else float("nan")
    far = float(fa) / float(n_diff) if n_diff else float("nan")
    return val, far


def _auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Trapezoidal area under the mean ROC (``sklearn.metrics.auc`` on the same points)."""
    order = np.lexsort((tpr, fpr))
    x, y = fpr[order], tpr[order]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Equal error rate: where FPR = 1 - TPR on the linearly interpolated mean ROC."""
    fnr = 1.0 - tpr
    d = fpr - fnr  # increases with the threshold: from <= 0 (strict) to >= 0 (lenient)
    idx = np.nonzero(d >= 0)[0]
    if idx.size == 0:
        return float(fnr[-1])
    i = int(idx[0])
    if i == 0 or d[i] == 0:
        return float((fpr[i] + fnr[i]) / 2.0)
    w = -d[i - 1] / (d[i] - d[i - 1])
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def check_finite(embeddings: np.ndarray, source: str = "the model") -> None:
    """Refuse NaN / inf embeddings: a diverged model has no verification accuracy (the reference reports 0.0 / NaN)."""
    emb = np.asarray(embeddings)
    bad = ~np.isfinite(emb).reshape(len(emb), -1).all(axis=1) if emb.size else np.zeros(0, bool)
    if bad.any():
        raise ModelDivergedError(
            f"{source}: {int(bad.sum())} of {len(emb)} embeddings are NaN or inf (first: image {int(np.argmax(bad))}): "
            "the model diverged, so verification accuracy is undefined (evaluate an earlier checkpoint such as "
            "best.pt, or retrain with a lower learning rate / a gradient clip)")


def evaluate(embeddings: np.ndarray, issame: np.ndarray, n_folds: int = 10, far_target: float = 1e-3,
             source: str = "the model") -> VerificationResult:
    """All metrics for normalised ``embeddings`` (2N, D) and ``issame`` (N,), reference semantics.

    NaN / inf embeddings raise :class:`~facenas.errors.ModelDivergedError` (naming ``source``).
    """
    check_finite(embeddings, source)
    issame = np.asarray(issame, dtype=bool)
    dist = pair_distances(np.asarray(embeddings))
    n = min(issame.size, dist.size)
    dist, issame = dist[:n], issame[:n]
    folds = kfold_indices(n, n_folds)

    tprs = np.zeros((len(folds), ACC_THRESHOLDS.size))
    fprs = np.zeros((len(folds), ACC_THRESHOLDS.size))
    accuracy = np.zeros(len(folds))
    best = []
    val = np.zeros(len(folds))
    far = np.zeros(len(folds))
    for f, (train, test) in enumerate(folds):
        _, _, acc_train = _accuracy_stats(dist[train], issame[train], ACC_THRESHOLDS)
        b = int(np.argmax(acc_train))
        best.append(float(ACC_THRESHOLDS[b]))
        tprs[f], fprs[f], acc_test = _accuracy_stats(dist[test], issame[test], ACC_THRESHOLDS)
        accuracy[f] = acc_test[b]

        tp, fp, n_same, n_diff = _counts(dist[train], issame[train], VAL_THRESHOLDS)
        far_train = fp / float(n_diff)
        if np.max(far_train) >= far_target:
            threshold = slinear_interp(far_train, VAL_THRESHOLDS, far_target)
        else:
            threshold = 0.0
        val[f], far[f] = _val_far(dist[test], issame[test], threshold)

    tpr, fpr = np.mean(tprs, 0), np.mean(fprs, 0)
    if any(not issame[test].any() or issame[test].all() for _, test in folds):
        # Class-pure folds (pairs sorted by class, e.g. lfw_devtest.bin) put TPR = 0 (FPR = 0) into
        # the fold mean, which caps the mean ROC and makes AUC/EER meaningless (AUC 0.22 at 72%
        # accuracy). The ROC over all pairs pooled, on the same threshold grid, is used instead.
        tpr, fpr, _ = _accuracy_stats(dist, issame, ACC_THRESHOLDS)
    return VerificationResult(
        accuracy=float(np.mean(accuracy)),
        accuracy_std=float(np.std(accuracy)),
        fold_accuracies=[float(a) for a in accuracy],
        tar_at_far=float(np.nanmean(val)) if np.isfinite(val).any() else float("nan"),
        tar_std=float(np.nanstd(val)) if np.isfinite(val).any() else float("nan"),
        far=float(np.nanmean(far)) if np.isfinite(far).any() else float("nan"),
        auc=_auc(fpr, tpr),
        eer=_eer(fpr, tpr),
        best_thresholds=best,
        tpr=tpr,
        fpr=fpr,
    )


def flip_embeddings(emb: np.ndarray, emb_flipped: np.ndarray) -> np.ndarray:
    """Flip-test embeddings: L2-normalised sum of the image's and its mirror's embeddings."""
    return normalize_rows(np.asarray(emb) + np.asarray(emb_flipped))
