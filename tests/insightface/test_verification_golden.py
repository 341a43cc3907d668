"""Metric equality with golden numbers from arcface_torch's own eval/verification.py.

``tests/data/verification/make_golden.py`` ran the reference (real mxnet 1.9.1, numpy 1.23.5,
scipy 1.10.1 with SciPy 1.8.1's slinear construction for TAR@FAR, see its docstring) on the
embeddings in ``embeddings.npz`` and recorded ``golden.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facenas.adapters.insightface.verification import evaluate

DATA = Path(__file__).resolve().parents[1] / "data" / "verification"
GOLDEN = json.loads((DATA / "golden.json").read_text())
ARRAYS = np.load(DATA / "embeddings.npz")


def _set(name: str) -> tuple[np.ndarray, np.ndarray]:
    return ARRAYS[f"{name}_codes"].astype(np.float64) / 128.0, ARRAYS[f"{name}_issame"]


@pytest.mark.parametrize("name", ["lfw_like", "hard", "sorted_devtest"])
def test_accuracy_and_roc_equal_the_reference(name):
    gold = GOLDEN["sets"][name]
    res = evaluate(*_set(name))
    assert res.fold_accuracies == gold["fold_accuracies"]  # bit-identical per fold
    assert res.accuracy == gold["accuracy"] and res.accuracy_std == gold["accuracy_std"]
    if name == "sorted_devtest":  # class-pure folds: the reference's fold-mean ROC is capped, ours is pooled
        assert max(gold["tpr"]) <= 0.5 + 1e-12 and max(res.tpr) == 1.0 and res.auc > gold["auc"]
        return
    assert res.tpr.tolist() == gold["tpr"] and res.fpr.tolist() == gold["fpr"]
    assert res.auc == pytest.approx(gold["auc"], abs=1e-12)  # sklearn.metrics.auc on the same mean ROC
    if "eer" in gold:
        assert res.eer == pytest.approx(gold["eer"], abs=1e-9)  # facenet's brentq definition


@pytest.mark.parametrize("name", ["lfw_like", "hard"])
def test_tar_at_far_equals_the_reference_with_scipy18_interpolation(name):
    gold = GOLDEN["sets"][name]
    assert "duplicates" in gold["errors"][f"evaluate with scipy {GOLDEN['scipy']}"]  # InsightFace #2152
    res = evaluate(*_set(name))
    assert res.tar_at_far == gold["tar_at_far"] and res.tar_std == gold["tar_std"] and res.far == gold["far"]


def test_class_pure_folds_give_nan_free_metrics_where_the_reference_divides_by_zero():
    gold = GOLDEN["sets"]["sorted_devtest"]
    assert gold["errors"]["evaluate with scipy 1.8 slinear"].startswith("ZeroDivisionError")
    res = evaluate(*_set("sorted_devtest"))
    assert np.isfinite([res.accuracy, res.tar_at_far, res.far, res.auc, res.eer]).all()


def test_golden_sets_span_easy_to_hard():
    accs = {n: GOLDEN["sets"][n]["accuracy"] for n in ("lfw_like", "hard")}
    assert accs["lfw_like"] > 0.95 and accs["hard"] < 0.65
