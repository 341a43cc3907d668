"""Golden verification numbers from arcface_torch's own ``eval/verification.py`` (run once, outside facenas).

    python3 -m venv /tmp/mxenv
    /tmp/mxenv/bin/pip install mxnet==1.9.1 numpy==1.23.5 scipy==1.10.1 scikit-learn==1.3.2
    /tmp/mxenv/bin/python tests/data/verification/make_golden.py --arcface-torch PATH/TO/recognition/arcface_torch \
        [--torch-site DIR_WITH_TORCH]

The reference module is imported from the user's checkout (real ``mxnet``; ``torch`` from
``--torch-site`` or, if absent, a stand-in providing only the ``torch.no_grad`` decorator its
module body uses -- the metric functions never touch torch). Nothing of it is copied here.

Embeddings are int8 codes ``q`` (``embedding = q / 128``): squared distances of such vectors are
exact in float64, so the numbers cannot depend on summation order or numpy version.
``embeddings.npz`` holds the codes and ``issame`` of three sets:

- ``lfw_like``: 6,000 pairs in LFW View 2 order (10 folds x 300 same then 300 different), dim 8;
- ``hard``: 6,000 pairs, shuffled classes, weaker separation;
- ``sorted_devtest``: 1,000 pairs, 500 same then 500 different (LFW View 1 pairsDevTest order).

``golden.json`` holds, per set, what the reference returns: ``calculate_roc``'s per-fold
accuracies and mean TPR/FPR, and ``evaluate()``'s ``val``, ``val_std``, ``far`` (TAR@FAR=1e-3).
SciPy >= 1.9 makes ``evaluate()`` raise "Expect x to not have duplicates" (InsightFace issue
#2152; recorded in ``errors``); the TAR numbers are therefore computed with the reference's
``evaluate()`` with ``interpolate.interp1d`` replaced by SciPy 1.8.1's construction of a
``kind='slinear'`` interpolant (stable argsort, ``BSpline.construct_fast(r_[x0, x, xn], y, 1)``,
evaluated by SciPy's compiled B-spline code, bounds error outside the data) -- what SciPy <= 1.8
ran. For ``sorted_devtest`` the reference ``evaluate()`` divides by zero (class-pure test folds)
and only ``calculate_roc`` is recorded. AUC is ``sklearn.metrics.auc`` on the reference's mean
ROC; EER is facenet's ``brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)`` (not defined
for ``sorted_devtest``, whose mean ROC stops at FPR 0.5 because half its test folds hold no
different pairs).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make_codes(n_pairs: int, dim: int, same_noise: tuple[float, float], neg_mix: tuple[float, float],
               issame: np.ndarray, seed: int) -> np.ndarray:
    rs = np.random.RandomState(seed)
    a = rs.randn(n_pairs, dim)
    same_b = a + rs.uniform(*same_noise, size=(n_pairs, 1)) * rs.randn(n_pairs, dim)
    diff_b = rs.uniform(*neg_mix, size=(n_pairs, 1)) * a + rs.randn(n_pairs, dim)
    b = np.where(issame[:, None], same_b, diff_b)
    emb = np.empty((2 * n_pairs, dim))
    emb[0::2], emb[1::2] = a, b
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return np.clip(np.round(emb * 127), -127, 127).astype(np.int8)


def make_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    lfw_order = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], 10)
    hard_order = np.random.RandomState(7).rand(6000) < 0.5
    dev_order = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    return {
        "lfw_like": (make_codes(6000, 8, (0.15, 0.75), (0.0, 0.3), lfw_order, 1), lfw_order),
        "hard": (make_codes(6000, 8, (0.8, 2.5), (0.0, 0.9), hard_order, 2), hard_order),
        "sorted_devtest": (make_codes(1000, 8, (0.4, 1.3), (0.0, 0.5), dev_order, 3), dev_order),
    }


def load_reference(checkout: str, torch_site: str | None) -> types.ModuleType:
    import mxnet  # noqa: F401 - the real one, as the reference imports it

    if torch_site:
        sys.path.append(torch_site)
    try:
        import torch  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("torch")
        stand_in.no_grad = lambda: (lambda fn: fn)
        sys.modules["torch"] = stand_in
    path = os.path.join(checkout, "eval", "verification.py")
    spec = importlib.util.spec_from_file_location("arcface_torch_verification", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scipy18_interp1d(x, y, kind="linear"):
    """``interp1d(x, y, kind='slinear')`` built as SciPy 1.8.1 built it (no duplicate check)."""
    from scipy.interpolate import BSpline

    assert kind == "slinear"
    x = np.array(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    xs, ys = x[order], np.array(y, dtype=float)[order]
    spline = BSpline.construct_fast(np.r_[xs[0], xs, xs[-1]], np.ascontiguousarray(ys), 1)

    def f(x_new):
        if x_new < xs[0] or x_new > xs[-1]:
            raise ValueError("A value in x_new is outside the interpolation range.")
        return spline(np.asarray(x_new))

    return f


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arcface-torch", required=True)
    parser.add_argument("--torch-site", default=None)
    args = parser.parse_args()

    import scipy
    import sklearn
    from scipy import interpolate
    from scipy.optimize import brentq
    from sklearn.metrics import auc

    ref = load_reference(args.arcface_torch, args.torch_site)
    sets = make_sets()
    np.savez_compressed(os.path.join(HERE, "embeddings.npz"),
                        **{f"{k}_codes": v[0] for k, v in sets.items()}, **{f"{k}_issame": v[1] for k, v in sets.items()})
    out = {"reference": "arcface_torch eval/verification.py", "numpy": np.__version__, "scipy": scipy.__version__,
           "sklearn": sklearn.__version__, "sets": {}}
    for name, (codes, issame) in sets.items():
        emb = codes.astype(np.float64) / 128.0
        record: dict = {"errors": {}}
        tpr, fpr, acc = ref.calculate_roc(np.arange(0, 4, 0.01), emb[0::2], emb[1::2], np.asarray(issame), nrof_folds=10)
        record.update(fold_accuracies=acc.tolist(), accuracy=float(np.mean(acc)), accuracy_std=float(np.std(acc)),
                      tpr=tpr.tolist(), fpr=fpr.tolist(), auc=float(auc(fpr, tpr)))
        try:
            record["eer"] = float(brentq(lambda x: 1.0 - x - interpolate.interp1d(fpr, tpr)(x), 0.0, 1.0))
        except ValueError as exc:  # the mean ROC does not reach FPR = 1 (class-pure folds)
            record["errors"]["eer"] = f"{type(exc).__name__}: {exc}"
        try:
            ref.evaluate(emb, issame, nrof_folds=10)
        except Exception as exc:  # noqa: BLE001 - recorded: what the reference does on this SciPy
            record["errors"][f"evaluate with scipy {scipy.__version__}"] = f"{type(exc).__name__}: {exc}"
        saved = ref.interpolate.interp1d
        ref.interpolate.interp1d = scipy18_interp1d
        try:
            r_tpr, r_fpr, r_acc, val, val_std, far = ref.evaluate(emb, issame, nrof_folds=10)
            assert np.array_equal(r_acc, acc) and np.array_equal(r_tpr, tpr)
            record.update(tar_at_far=float(val), tar_std=float(val_std), far=float(far))
        except Exception as exc:  # noqa: BLE001
            record["errors"]["evaluate with scipy 1.8 slinear"] = f"{type(exc).__name__}: {exc}"
        finally:
            ref.interpolate.interp1d = saved
        out["sets"][name] = record
        print(name, {k: v for k, v in record.items() if k in ("accuracy", "accuracy_std", "tar_at_far", "auc", "eer",
                                                                "errors")})
    with open(os.path.join(HERE, "golden.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
