"""A faithful re-run of arcface_torch's ``eval/verification.py`` algorithm (threshold loops).

Written from the reference's published algorithm (not copied): per fold, a Python loop over the
threshold grid computes confusion counts with boolean masks, exactly as the reference's
``calculate_roc`` / ``calculate_accuracy`` / ``calculate_val`` / ``calculate_val_far`` do, with
scikit-learn's ``KFold(shuffle=False)``. The only substitution is the ``interp1d(kind='slinear')``
call, which SciPy >= 1.9 refuses on repeated FAR values (InsightFace #2152): here SciPy's own
``BSpline`` is built the way SciPy <= 1.8's ``make_interp_spline(k=1)`` built it, an
implementation independent of :func:`facenas.adapters.insightface.verification.slinear_interp`.

Used by ``benchmarks/bench_verification.py`` (speed and bit-identity) and the tests.
"""
from __future__ import annotations

import numpy as np


def _kfold(n: int, n_folds: int):
    from sklearn.model_selection import KFold

    return KFold(n_splits=n_folds, shuffle=False).split(np.arange(n))


def _accuracy(threshold, dist, actual_issame):
    predict_issame = np.less(dist, threshold)
    tp = np.sum(np.logical_and(predict_issame, actual_issame))
    fp = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual_issame)))
    fn = np.sum(np.logical_and(np.logical_not(predict_issame), actual_issame))
    tpr = 0 if (tp + fn == 0) else float(tp) / float(tp + fn)
    fpr = 0 if (fp + tn == 0) else float(fp) / float(fp + tn)
    return tpr, fpr, float(tp + tn) / dist.size


def _val_far(threshold, dist, actual_issame):
    predict_issame = np.less(dist, threshold)
    true_accept = np.sum(np.logical_and(predict_issame, actual_issame))
    false_accept = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    n_same = np.sum(actual_issame)
    n_diff = np.sum(np.logical_not(actual_issame))
    return float(true_accept) / float(n_same), float(false_accept) / float(n_diff)


def scipy18_slinear(x, y):
    """``interp1d(x, y, kind='slinear')`` as SciPy <= 1.8 built it, using SciPy's BSpline."""
    from scipy.interpolate import BSpline

    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    xs, ys = x[order], np.asarray(y, dtype=float)[order]
    spline = BSpline.construct_fast(np.r_[xs[0], xs, xs[-1]], np.ascontiguousarray(ys), 1)

    def f(x_new):
        if x_new < xs[0] or x_new > xs[-1]:
            raise ValueError("A value in x_new is outside the interpolation range.")
        return spline(x_new)

    return f


def reference_evaluate(embeddings, actual_issame, n_folds: int = 10, far_target: float = 1e-3) -> dict:
    """Accuracy per fold, mean TPR/FPR, TAR@FAR mean/std and FAR, by the reference's loops."""
    actual_issame = np.asarray(actual_issame)
    e1, e2 = embeddings[0::2], embeddings[1::2]
    dist = np.sum(np.square(np.subtract(e1, e2)), 1)
    n = min(len(actual_issame), e1.shape[0])

    thresholds = np.arange(0, 4, 0.01)
    tprs = np.zeros((n_folds, len(thresholds)))
    fprs = np.zeros((n_folds, len(thresholds)))
    accuracy = np.zeros(n_folds)
    for f, (train, test) in enumerate(_kfold(n, n_folds)):
        acc_train = np.zeros(len(thresholds))
        for t, th in enumerate(thresholds):
            _, _, acc_train[t] = _accuracy(th, dist[train], actual_issame[train])
        best = np.argmax(acc_train)
        for t, th in enumerate(thresholds):
            tprs[f, t], fprs[f, t], _ = _accuracy(th, dist[test], actual_issame[test])
        _, _, accuracy[f] = _accuracy(thresholds[best], dist[test], actual_issame[test])

    thresholds = np.arange(0, 4, 0.001)
    val = np.zeros(n_folds)
    far = np.zeros(n_folds)
    for f, (train, test) in enumerate(_kfold(n, n_folds)):
        far_train = np.zeros(len(thresholds))
        for t, th in enumerate(thresholds):
            _, far_train[t] = _val_far(th, dist[train], actual_issame[train])
        if np.max(far_train) >= far_target:
            threshold = scipy18_slinear(far_train, thresholds)(far_target)
        else:
            threshold = 0.0
        val[f], far[f] = _val_far(threshold, dist[test], actual_issame[test])
    return {
        "fold_accuracies": accuracy,
        "accuracy": float(np.mean(accuracy)),
        "accuracy_std": float(np.std(accuracy)),
        "tpr": np.mean(tprs, 0),
        "fpr": np.mean(fprs, 0),
        "tar_at_far": float(np.mean(val)),
        "tar_std": float(np.std(val)),
        "far": float(np.mean(far)),
    }
