"""Comparator (LightGBM, compiled to numpy), OFA's MLP predictor and hold-out ranking metrics."""
from __future__ import annotations

import numpy as np
import pytest

from facenas.adapters.gbdt import fit_binary_classifier, predict_raw
from facenas.plugins.ofa.costs import AdditiveCost
from facenas.plugins.ofa.predictors import (
    Comparator,
    ComparatorConfig,
    CompiledTrees,
    MLPConfig,
    MLPPredictor,
    holdout_split,
    random_pairs,
    ranking_metrics,
)
from facenas.nas.space import create_space


@pytest.fixture(scope="module")
def accuracy_set():
    """A synthetic accuracy set on ofa_tiny: accuracy grows with FLOPs, plus noise, in 0.001 steps."""
    space = create_space("ofa_tiny")
    rng = np.random.default_rng(0)
    genomes = space.random_genomes(rng, 600)
    flops = AdditiveCost.flops(space).of_genomes(genomes)
    z = (flops - flops.min()) / (flops.max() - flops.min())
    acc = np.round(0.80 + 0.1 * z + 0.01 * rng.standard_normal(len(z)), 3)
    return space, genomes, space.encode_genomes(genomes), acc


@pytest.fixture(scope="module")
def comparator(accuracy_set):
    _, _, enc, acc = accuracy_set
    train, _ = holdout_split(len(acc), 0.2, seed=0)
    return Comparator.fit(enc[train], acc[train], ComparatorConfig(num_pairs=4000, seed=1))


def test_compiled_trees_equal_lightgbm_predictions():
    rng = np.random.default_rng(3)
    x = (rng.random((3000, 40)) < 0.4).astype(np.float32)
    y = ((x[:, 0] + x[:, 5] * x[:, 30] + 0.3 * rng.standard_normal(3000)) > 0.7).astype(int)
    model = fit_binary_classifier(x, y, {"num_leaves": 15}, num_boost_round=30)
    compiled = CompiledTrees.from_lightgbm(model.trees, 40)
    test = (rng.random((500, 40)) < 0.5).astype(np.float32)
    np.testing.assert_allclose(compiled.predict(test), predict_raw(model.model_text, test), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="binary"):
        compiled.predict(test * 0.5)


def test_comparator_leaf_masks_give_lightgbm_margins(accuracy_set, comparator):
    _, _, enc, _ = accuracy_set
    rng = np.random.default_rng(4)
    a, b = rng.integers(len(enc), size=300), rng.integers(len(enc), size=300)
    pairs = np.concatenate([enc[a], enc[b]], axis=1)
    raw = predict_raw(comparator.model_text, pairs)
    raw_back = predict_raw(comparator.model_text, np.concatenate([enc[b], enc[a]], axis=1))
    proj = comparator.project(enc)
    np.testing.assert_allclose(comparator.margins(proj, a, b), raw - raw_back, rtol=1e-4, atol=1e-4)
    one_way = Comparator(comparator.model_text, comparator.trees, comparator.encoding_size,
                         comparator.config.replace(symmetric=False))
    np.testing.assert_allclose(one_way.margins(one_way.project(enc), a, b), raw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(comparator.probability(enc[a[:5]], enc[b[:5]]), 1 / (1 + np.exp(-raw[:5])), rtol=1e-4)
    # antisymmetric: an architecture never beats itself
    assert not comparator.better(proj, a, a).any()


def test_comparator_ranks_a_held_out_set(accuracy_set, comparator):
    _, _, enc, acc = accuracy_set
    _, hold = holdout_split(len(acc), 0.2, seed=0)
    metrics = ranking_metrics(acc[hold], pairwise_better=comparator.pairwise_matrix(enc[hold]))
    assert metrics["num_archs"] == len(hold)
    assert metrics["pairwise_accuracy"] > 0.75
    assert metrics["kendall_tau"] > 0.55


def test_comparator_save_load_round_trip(tmp_path, accuracy_set, comparator):
    _, _, enc, _ = accuracy_set
    comparator.save(tmp_path / "nac.json")
    again = Comparator.load(tmp_path / "nac.json")
    a, b = np.arange(50), np.arange(50)[::-1]
    np.testing.assert_array_equal(again.margins(again.project(enc), a, b),
                                  comparator.margins(comparator.project(enc), a, b))


def test_mlp_predictor_fits_and_round_trips(tmp_path, accuracy_set):
    _, _, enc, acc = accuracy_set
    train, hold = holdout_split(len(acc), 0.2, seed=0)
    mlp = MLPPredictor.fit(enc[train], acc[train], MLPConfig(epochs=60, hidden_size=64, seed=0))
    metrics = ranking_metrics(acc[hold], scores=mlp.predict(enc[hold]))
    assert metrics["rmse"] < 0.03 and metrics["pairwise_accuracy"] > 0.7
    mlp.save(tmp_path / "mlp.json")
    np.testing.assert_allclose(MLPPredictor.load(tmp_path / "mlp.json").predict(enc[:10]), mlp.predict(enc[:10]),
                               rtol=1e-6)


def test_ranking_metrics_and_pairs():
    true = np.array([0.9, 0.8, 0.7, 0.7])
    perfect = ranking_metrics(true, scores=true)
    assert perfect["pairwise_accuracy"] == 1.0 and perfect["num_pairs"] == 5 and perfect["rmse"] == 0
    reverse = ranking_metrics(true, scores=-true)
    assert reverse["pairwise_accuracy"] == 0.0 and reverse["kendall_tau"] < -0.99
    better = true[:, None] > true[None, :]
    assert ranking_metrics(true, pairwise_better=better)["pairwise_accuracy"] == 1.0
    a, b, y = random_pairs(true, 50, np.random.default_rng(0))
    assert len(a) == 50 and np.all(true[a] != true[b]) and np.array_equal(y, (true[a] > true[b]).astype(int))
