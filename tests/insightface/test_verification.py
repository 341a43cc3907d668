"""Verification metrics: bit-identical to the reference loop algorithm, SciPy<=1.8 slinear, golden numbers."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.reference_verification import reference_evaluate, scipy18_slinear
from facenas.adapters.insightface.verification import (
    evaluate,
    flip_embeddings,
    kfold_indices,
    normalize_rows,
    slinear_interp,
)


def _embeddings(n_pairs: int, noise: float, seed: int, dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    issame = r.random(n_pairs) < 0.5
    a = r.normal(size=(n_pairs, dim))
    b = np.where(issame[:, None], a + noise * r.normal(size=(n_pairs, dim)), r.normal(size=(n_pairs, dim)))
    emb = np.empty((2 * n_pairs, dim), np.float32)
    emb[0::2], emb[1::2] = a, b
    return normalize_rows(emb), issame


@pytest.mark.parametrize("noise, seed", [(0.8, 0), (1.5, 1), (3.0, 2)])
def test_bit_identical_to_reference_loops(noise, seed):
    emb, issame = _embeddings(600, noise, seed)
    ref = reference_evaluate(emb, issame)
    ours = evaluate(emb, issame)
    assert np.array_equal(ref["fold_accuracies"], np.asarray(ours.fold_accuracies))
    assert np.array_equal(ref["tpr"], ours.tpr) and np.array_equal(ref["fpr"], ours.fpr)
    assert ours.accuracy == ref["accuracy"] and ours.accuracy_std == ref["accuracy_std"]
    assert ours.tar_at_far == ref["tar_at_far"] and ours.far == ref["far"]


def test_kfold_matches_sklearn():
    from sklearn.model_selection import KFold

    for n in (10, 600, 1003):
        ours = kfold_indices(n, 10)
        for (tr, te), (tr2, te2) in zip(ours, KFold(10, shuffle=False).split(np.arange(n))):
            assert np.array_equal(tr, tr2) and np.array_equal(te, te2)


def test_slinear_reproduces_scipy18_with_repeated_x():
    r = np.random.default_rng(0)
    for _ in range(200):
        x = np.sort(np.round(r.random(40), 1))  # many repeats, like a FAR step function
        y = np.arange(40) * 0.01
        for x_new in (x[0], x[-1], *r.uniform(x[0], x[-1], 5), *np.unique(x)):
            expected = float(scipy18_slinear(x, y)(x_new))
            got = slinear_interp(x, y, x_new)
            assert got == expected or (np.isnan(expected) and np.isnan(got))  # bit-identical
    with pytest.raises(ValueError, match="outside the interpolation range"):
        slinear_interp(np.array([0.0, 1.0]), np.array([0.0, 1.0]), 2.0)


def test_metrics_are_sane():
    perfect, issame = _embeddings(600, 0.01, 3)
    res = evaluate(perfect, issame)
    assert res.accuracy == 1.0 and res.auc > 0.999 and res.eer < 0.01 and res.tar_at_far == 1.0
    noise, issame = _embeddings(600, 50.0, 4)
    res = evaluate(noise, issame)
    assert 0.4 < res.accuracy < 0.65 and 0.35 < res.auc < 0.65 and 0.35 < res.eer < 0.65
    d = res.to_dict("lfw")
    assert set(d) >= {"lfw_acc", "lfw_acc_std", "lfw_tar_at_far_1e-3", "lfw_auc", "lfw_eer"}


def test_flip_embeddings_normalise_the_sum():
    a = np.array([[3.0, 0.0]], np.float32)
    b = np.array([[0.0, 4.0]], np.float32)
    out = flip_embeddings(a, b)
    assert out.dtype == np.float32 and np.allclose(out, [[0.6, 0.8]])


def test_auc_and_eer_do_not_depend_on_pair_order_when_folds_are_class_pure():
    # lfw_devtest.bin lists 500 same pairs then 500 different ones: every fold is class-pure, and the
    # fold-mean ROC would cap TPR at 0.5 (AUC far below 0.5 for a good model). Pooled ROC instead.
    emb, issame = _embeddings(400, 1.0, 3)
    order = np.argsort(~issame, kind="stable")  # same pairs first
    sorted_emb = emb.reshape(-1, 2, emb.shape[1])[order].reshape(emb.shape)
    res = evaluate(sorted_emb, issame[order])
    pooled_auc = evaluate(emb, issame).auc
    assert res.auc > 0.9 and abs(res.auc - pooled_auc) < 0.02, (res.auc, pooled_auc)
    assert res.eer < 0.15 and res.accuracy > 0.8
