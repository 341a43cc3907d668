"""LightGBM behind a small interface: fit a binary GBDT classifier, predict, dump and reload trees.

Only this module imports :mod:`lightgbm` (lazily, with an install hint). Search code never needs
it: :mod:`facenas.plugins.ofa.predictors` compiles the dumped trees into numpy arrays.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from facenas.errors import require

log = logging.getLogger(__name__)


def _lgb():
    return require("lightgbm", "the LightGBM neural architecture comparator", "pip install lightgbm")


@dataclasses.dataclass
class GBDTModel:
    """A trained LightGBM booster as text (``model_to_string``) plus its dumped trees.

    Attributes:
        model_text: LightGBM's own text format (reload with :func:`load_booster`).
        trees: ``dump_model()["tree_info"]`` (the tree structures).
        num_features: input dimension.
    """

    model_text: str
    trees: list[dict[str, Any]]
    num_features: int


def fit_binary_classifier(features: np.ndarray, labels: np.ndarray, params: dict[str, Any] | None = None,
                          num_boost_round: int = 100, seed: int = 0) -> GBDTModel:
    """Train a LightGBM binary classifier (``objective=binary``) on ``features`` / 0-1 ``labels``.

    ``params`` are LightGBM parameters (defaults: LightGBM's own, ``verbosity=-1``, one thread -- two
    threads were 7x slower than one on the shared 2-core machine --,
    deterministic with ``seed``).
    """
    lgb = _lgb()
    full = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": int(seed), "deterministic": True,
            "force_row_wise": True, **(params or {})}
    data = lgb.Dataset(np.asarray(features, dtype=np.float32), label=np.asarray(labels, dtype=np.float32),
                       free_raw_data=True)
    booster = lgb.train(full, data, num_boost_round=int(num_boost_round))
    dump = booster.dump_model()
    return GBDTModel(booster.model_to_string(), dump["tree_info"], int(booster.num_feature()))


def load_booster(model_text: str):
    """A LightGBM ``Booster`` from its text form."""
    return _lgb().Booster(model_str=model_text)


def predict_raw(model_text_or_booster: Any, features: np.ndarray) -> np.ndarray:
    """Raw margins (log-odds) of LightGBM's own predictor (the reference for compiled trees)."""
    booster = load_booster(model_text_or_booster) if isinstance(model_text_or_booster, str) else model_text_or_booster
    return np.asarray(booster.predict(np.asarray(features, dtype=np.float32), raw_score=True), dtype=np.float64)
