"""Accuracy predictors over architecture encodings: the paper's comparator and OFA's MLP.

* :class:`Comparator` -- the neural architecture comparator (NAC) of Savchenko et al. (Sec. IV-B):
  a LightGBM binary classifier on the concatenated encodings of two subnets, trained on random
  pairs of the accuracy set (paper: 20,000) with label 1 when the first is more accurate.
  For the search its trees are *compiled* to numpy (:class:`CompiledTrees`): with binary
  encodings a leaf is reached iff every condition on its path holds, and the conditions split
  into those on the first architecture's features and those on the second's. Per architecture
  and tree, one machine word holds the leaves compatible with it as first element (and one as
  second element), computed once per architecture by a matrix product; the leaf a pair reaches in
  a tree is the single bit of ``first[a] & second[b]``. Comparing a whole population against a
  pivot is then a few vectorised operations over ``(pairs, trees)`` words.
* :class:`MLPPredictor` -- OFA's accuracy predictor (Cai et al., ``AccuracyPredictor``): an MLP
  (3 x 400, ReLU) regressing accuracy from the encoding, offset by the mean accuracy; trained in
  torch, evaluated in numpy.

Hold-out quality (:func:`ranking_metrics`): pairwise ranking accuracy over all hold-out pairs with
different accuracies, Kendall's tau, and for regressors the RMSE.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Mapping, Sequence

import numpy as np

from facenas.config import TypedConfig
from facenas.errors import ConfigError, DataFormatError
from facenas.utils.seed import make_rng

log = logging.getLogger(__name__)

COMPARATOR_FORMAT = "facenas.ofa.comparator/1"
MLP_FORMAT = "facenas.ofa.mlp_predictor/1"


# -- data helpers -------------------------------------------------------------------------------------
def holdout_split(n: int, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(train_index, holdout_index)`` of ``n`` items (OFA: 80 / 20)."""
    if not 0 < holdout_fraction < 1:
        raise ConfigError(f"holdout_fraction={holdout_fraction} must be in (0, 1)")
    perm = make_rng(seed).permutation(n)
    n_hold = max(1, int(round(n * holdout_fraction)))
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


def random_pairs(accuracies: np.ndarray, num_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num_pairs`` random ordered pairs ``(a, b)`` with different accuracies, label ``acc[a] > acc[b]``.

    The paper draws 20,000 random pairs of the accuracy set (no hard-negative mining). Pairs with
    equal accuracy carry no label and are redrawn (bounded).
    """
    acc = np.asarray(accuracies, dtype=np.float64)
    if len(np.unique(acc)) < 2:
        raise ConfigError("the accuracy set needs at least two different accuracies to train a comparator")
    a_all, b_all = [], []
    need = int(num_pairs)
    for _ in range(100):
        a = rng.integers(len(acc), size=2 * need)
        b = rng.integers(len(acc), size=2 * need)
        keep = acc[a] != acc[b]
        a_all.append(a[keep])
        b_all.append(b[keep])
        if sum(len(x) for x in a_all) >= num_pairs:
            break
    a = np.concatenate(a_all)[:num_pairs]
    b = np.concatenate(b_all)[:num_pairs]
    return a, b, (acc[a] > acc[b]).astype(np.int64)


def ranking_metrics(true: np.ndarray, scores: np.ndarray | None = None,
                    pairwise_better: np.ndarray | None = None) -> dict[str, float]:
    """Ranking quality on a hold-out set.

    Args:
        true: ``(n,)`` measured accuracies.
        scores: ``(n,)`` predicted accuracies (regressors), or
        pairwise_better: ``(n, n)`` bool, ``[i, j]`` = predicted "i better than j" (comparators).

    Returns ``pairwise_accuracy`` (fraction of pairs with different true accuracy ordered right),
    ``kendall_tau`` (tau-b of the predicted scores -- for a comparator, of its Copeland scores,
    the number of hold-out architectures each one beats -- against the truth), ``num_pairs``, and
    ``rmse`` for regressors.
    """
    from scipy.stats import kendalltau

    true = np.asarray(true, dtype=np.float64)
    n = len(true)
    iu, ju = np.triu_indices(n, 1)
    differ = true[iu] != true[ju]
    iu, ju = iu[differ], ju[differ]
    truth = true[iu] > true[ju]
    out: dict[str, float] = {"num_archs": float(n), "num_pairs": float(len(iu))}
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        pred = scores[iu] > scores[ju]
        ties = scores[iu] == scores[ju]
        out["pairwise_accuracy"] = float(np.mean(np.where(ties, 0.5, pred == truth)))
        out["kendall_tau"] = float(kendalltau(scores, true).statistic)
        out["rmse"] = float(np.sqrt(np.mean((scores - true) ** 2)))
    elif pairwise_better is not None:
        pb = np.asarray(pairwise_better, dtype=bool)
        out["pairwise_accuracy"] = float(np.mean(pb[iu, ju] == truth))
        copeland = pb.sum(axis=1) - np.diag(pb)
        out["kendall_tau"] = float(kendalltau(copeland, true).statistic)
    else:
        raise ValueError("give scores or pairwise_better")
    return out


# -- compiled tree ensembles --------------------------------------------------------------------------
@dataclasses.dataclass
class CompiledTrees:
    """A tree ensemble over binary features as leaf-condition counts (see the module docstring).

    Leaves are laid out tree by tree, ``width`` slots per tree (32 or 64; unused slots can never
    be reached), so a tree's leaves form one machine word of bits.

    Attributes:
        coef: ``(F, T * width)``: +1 / -1 where a leaf's path requires feature = 1 / 0.
        offset: ``(2, T * width)``: for the features of the first / second half of the input, the
            number of "= 0" conditions minus the number of conditions (-1 for unused slots in the
            first half); a leaf is reached iff ``x @ coef + offset.sum(0) == 0``, and is
            compatible with the first-half features ``x1`` iff ``x1 @ coef[:F/2] + offset[0] == 0``.
        value: ``(T, width)`` leaf values (shrinkage included); ``constant``: single-leaf trees.
        used: ``(T * width,)`` which slots hold a leaf.
    """

    coef: np.ndarray
    offset: np.ndarray
    value: np.ndarray
    constant: float
    num_trees: int
    width: int
    used: np.ndarray

    @property
    def num_leaves(self) -> int:
        return int(np.count_nonzero(self.used))

    @classmethod
    def from_lightgbm(cls, trees: Sequence[Mapping[str, Any]], num_features: int) -> "CompiledTrees":
        """Compile LightGBM's ``dump_model()["tree_info"]`` for inputs in {0, 1}."""
        per_tree: list[list[tuple[dict[int, int], float]]] = []
        constant = 0.0

        def walk(node: Mapping[str, Any], conds: dict[int, int], leaves: list) -> None:
            nonlocal constant
            if "split_feature" not in node:
                if not conds and "leaf_index" not in node:
                    constant += float(node["leaf_value"])  # a tree without splits
                    return
                leaves.append((dict(conds), float(node["leaf_value"])))
                return
            if node.get("decision_type", "<=") != "<=":
                raise DataFormatError("LightGBM model", f"decision type {node.get('decision_type')!r} "
                                      "(categorical split) cannot be compiled", "train on numeric 0/1 features")
            f, t = int(node["split_feature"]), float(node["threshold"])
            zero_missing = node.get("missing_type") == "Zero"

            def go_left(v: int) -> bool:
                if zero_missing and v == 0:
                    return bool(node.get("default_left", True))
                return v <= t

            for child, left in ((node["left_child"], True), (node["right_child"], False)):
                allowed = [v for v in (0, 1) if go_left(v) == left]
                if not allowed:
                    continue  # unreachable with binary inputs
                if len(allowed) == 2:
                    walk(child, conds, leaves)
                    continue
                need = allowed[0]
                if conds.get(f, need) != need:
                    continue  # contradicts an earlier condition on the path
                walk(child, {**conds, f: need}, leaves)

        for tree in trees:
            leaves: list = []
            walk(tree["tree_structure"], {}, leaves)
            if leaves:
                per_tree.append(leaves)
        most = max((len(t) for t in per_tree), default=1)
        if most > 64:
            raise ConfigError(f"a tree has {most} leaves; compiled comparators support up to 64 (set num_leaves <= 64)")
        width = 32 if most <= 32 else 64
        T, half = len(per_tree), num_features // 2
        coef = np.zeros((num_features, T * width), dtype=np.float32)
        offset = np.zeros((2, T * width), dtype=np.float32)
        offset[0] = -1.0  # unused slots: never compatible
        value = np.zeros((T, width), dtype=np.float32)
        used = np.zeros(T * width, dtype=bool)
        for t, leaves in enumerate(per_tree):
            for i, (conds, v) in enumerate(leaves):
                col = t * width + i
                offset[0, col] = 0.0
                used[col] = True
                value[t, i] = v
                for f, need in conds.items():
                    coef[f, col] = 1.0 if need == 1 else -1.0
                    offset[int(f >= half), col] += (1.0 if need == 0 else 0.0) - 1.0
        return cls(coef, offset, value, constant, T, width, used)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Raw margins of ``(N, F)`` binary features (equals LightGBM's ``raw_score``)."""
        features = np.asarray(features, dtype=np.float32)
        _check_binary(features)
        reached = (features @ self.coef + self.offset.sum(0)) == 0
        return reached.astype(np.float32) @ self.value.ravel() + self.constant

    # -- bit masks: one machine word of compatible leaves per tree -----------------------------------
    def _half_columns(self, half: int, num_inputs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct condition sets of one half: ``(rows, offset, column map)``.

        Many leaves share their conditions on one half of the pair (e.g. siblings split on the
        other half), have none (always compatible), or are unused slots (never); only distinct
        non-trivial condition sets go through the matrix product, and ``column map`` spreads the
        result back to the ``T * width`` leaf slots (index ``u`` = always, ``u + 1`` = never).
        """
        key = (half, num_inputs)
        cache = self.__dict__.setdefault("_columns", {})
        if key not in cache:
            rows = self.coef[:num_inputs] if half == 0 else self.coef[num_inputs:]
            cols = np.vstack([rows, self.offset[half][None]]).T  # (slots, n + 1)
            used = self.used
            trivial = ~np.any(rows != 0, axis=0)
            pick = used & ~trivial
            unique, inverse = np.unique(cols[pick], axis=0, return_inverse=True)
            u = len(unique)
            colmap = np.full(cols.shape[0], u + 1, dtype=np.int64)
            colmap[used & trivial] = u
            colmap[pick] = inverse.reshape(-1)
            cache[key] = (np.ascontiguousarray(unique[:, :-1].T), unique[:, -1].copy(), colmap)
        return cache[key]

    def masks(self, encodings: np.ndarray, half: int) -> np.ndarray:
        """``(N, T)`` words: bit ``i`` of tree ``t`` set iff leaf ``i`` is compatible with ``encodings``
        placed as the first (``half=0``) or second (``half=1``) element of the pair."""
        enc = np.asarray(encodings, dtype=np.float32)
        rows, offset, colmap = self._half_columns(half, enc.shape[1])
        distinct = (enc @ rows + offset) == 0  # (N, u)
        n = len(enc)
        extended = np.concatenate([distinct, np.ones((n, 1), bool), np.zeros((n, 1), bool)], axis=1)
        compatible = extended[:, colmap]  # (N, T * width), each tree's slots contiguous
        # width is a multiple of 8, so packing the flat array packs each tree into its own word
        packed = np.packbits(compatible.ravel(), bitorder="little")
        dtype = np.dtype("<u4") if self.width == 32 else np.dtype("<u8")
        return packed.view(dtype).reshape(n, self.num_trees)

    def sum_values(self, words: np.ndarray) -> np.ndarray:
        """Sum over trees of the value of the single leaf bit set in each ``(N, T)`` word.

        The bit's index is read from the exponent of the word converted to floating point (exact
        for powers of two).
        """
        if self.width == 32:
            exponent = (words.astype(np.float32).view(np.int32) >> 23) - 127
        else:
            exponent = (words.astype(np.float64).view(np.int64) >> 52) - 1023
        flat = exponent + np.arange(self.num_trees, dtype=exponent.dtype) * self.width
        return self.value.ravel()[flat].sum(axis=-1) + self.constant


def _check_binary(x: np.ndarray) -> None:
    if x.size and not np.all((x == 0) | (x == 1)):
        raise ValueError("compiled trees need binary (0/1) features; use the architecture encodings of the space")


# -- the comparator ----------------------------------------------------------------------------------
@dataclasses.dataclass
class ComparatorConfig(TypedConfig):
    """Training settings of the LightGBM comparator.

    Attributes:
        num_pairs: random training pairs (paper: 20,000).
        num_boost_round: boosting rounds (LightGBM's default 100).
        num_leaves, learning_rate, min_data_in_leaf, feature_fraction: LightGBM parameters
            (LightGBM's defaults; the paper does not change them).
        symmetric: decide "a better than b" by ``margin(a, b) - margin(b, a) > 0`` instead of
            ``margin(a, b) > 0`` alone, so the answer does not depend on the order of the pair.
        seed: pair sampling and LightGBM seed.
    """

    num_pairs: int = 20_000
    num_boost_round: int = 100
    num_leaves: int = 31
    learning_rate: float = 0.1
    min_data_in_leaf: int = 20
    feature_fraction: float = 1.0
    symmetric: bool = True
    seed: int = 0

    def check(self, source: str) -> None:
        for name in ("num_pairs", "num_boost_round", "num_leaves", "min_data_in_leaf"):
            if getattr(self, name) < 1 or (name == "num_leaves" and self.num_leaves < 2):
                raise ConfigError(f"{source}: {name}={getattr(self, name)} is too small")
        if not 0 < self.learning_rate <= 1 or not 0 < self.feature_fraction <= 1:
            raise ConfigError(f"{source}: learning_rate and feature_fraction must be in (0, 1]")


@dataclasses.dataclass
class Projections:
    """Per-architecture leaf masks: ``first`` as the first element of a pair, ``second`` as the second."""

    first: np.ndarray
    second: np.ndarray

    def take(self, index: np.ndarray) -> "Projections":
        return Projections(self.first[index], self.second[index])

    @staticmethod
    def concat(parts: Sequence["Projections"]) -> "Projections":
        return Projections(np.concatenate([p.first for p in parts]), np.concatenate([p.second for p in parts]))


class Comparator:
    """The neural architecture comparator: is architecture ``a`` more accurate than ``b``?

    Args:
        model: the trained LightGBM model (text + trees, from :mod:`facenas.adapters.gbdt`).
        encoding_size: length of one architecture encoding (the pair is twice as long).
        config: training settings (``symmetric`` is used at prediction time).
    """

    def __init__(self, model_text: str, trees: list[dict[str, Any]], encoding_size: int, config: ComparatorConfig):
        self.model_text = model_text
        self.trees = trees
        self.encoding_size = int(encoding_size)
        self.config = config
        self.compiled = CompiledTrees.from_lightgbm(trees, 2 * self.encoding_size)

    @classmethod
    def fit(cls, encodings: np.ndarray, accuracies: np.ndarray, config: ComparatorConfig | None = None) -> "Comparator":
        """Train on random pairs of ``(encodings, accuracies)`` (Sec. IV-B, "NAC's training")."""
        from facenas.adapters.gbdt import fit_binary_classifier

        config = config or ComparatorConfig()
        config.validate("comparator config")
        enc = np.asarray(encodings, dtype=np.float32)
        _check_binary(enc)
        rng = make_rng(config.seed)
        a, b, y = random_pairs(accuracies, config.num_pairs, rng)
        features = np.concatenate([enc[a], enc[b]], axis=1)
        params = {"num_leaves": config.num_leaves, "learning_rate": config.learning_rate,
                  "min_data_in_leaf": config.min_data_in_leaf, "feature_fraction": config.feature_fraction}
        model = fit_binary_classifier(features, y, params, config.num_boost_round, config.seed)
        comparator = cls(model.model_text, model.trees, enc.shape[1], config)
        log.info("comparator: %d trees, %d reachable leaves, trained on %d pairs (%.1f%% labelled 1)",
                 comparator.compiled.num_trees, comparator.compiled.num_leaves, len(y), 100 * y.mean())
        return comparator

    # -- fast path for the search ---------------------------------------------------------------------
    def project(self, encodings: np.ndarray) -> Projections:
        """Leaf masks of ``(N, encoding_size)`` binary encodings (computed once per architecture)."""
        enc = np.asarray(encodings, dtype=np.float32)
        _check_binary(enc)
        return Projections(self.compiled.masks(enc, 0), self.compiled.masks(enc, 1))

    def margins(self, proj: Projections, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Raw margins (log-odds of "first better") of the pairs ``(first[i], second[i])`` of ``proj``.

        With ``symmetric``, ``margin(a, b) - margin(b, a)`` (antisymmetric: exactly 0 for equal
        architectures).
        """
        out = self.compiled.sum_values(proj.first[first] & proj.second[second])
        if self.config.symmetric:
            out = out - self.compiled.sum_values(proj.first[second] & proj.second[first])
        return out

    def better(self, proj: Projections, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Bool: is ``first[i]`` predicted more accurate than ``second[i]``."""
        return self.margins(proj, first, second) > 0

    # -- convenience -------------------------------------------------------------------------------------
    def probability(self, enc_a: np.ndarray, enc_b: np.ndarray) -> np.ndarray:
        """P(a more accurate than b) of LightGBM's classifier (one order only), via the compiled trees."""
        raw = self.compiled.predict(np.concatenate([np.atleast_2d(enc_a), np.atleast_2d(enc_b)], axis=1))
        return 1.0 / (1.0 + np.exp(-raw))

    def pairwise_matrix(self, encodings: np.ndarray) -> np.ndarray:
        """``(n, n)`` bool of "i better than j" for all pairs (hold-out evaluation)."""
        proj = self.project(encodings)
        n = len(encodings)
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        out = np.zeros((n, n), dtype=bool)
        for start in range(0, n, 64):  # bounded memory: 64 rows of n pairs at a time
            rows = slice(start, min(n, start + 64))
            out[rows] = self.better(proj, i[rows].ravel(), j[rows].ravel()).reshape(-1, n)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"format": COMPARATOR_FORMAT, "encoding_size": self.encoding_size, "config": self.config.to_dict(),
                "model_text": self.model_text, "trees": self.trees}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "comparator") -> "Comparator":
        if data.get("format") != COMPARATOR_FORMAT:
            raise DataFormatError(source, f"not a facenas comparator (format {COMPARATOR_FORMAT!r})")
        return cls(data["model_text"], list(data["trees"]), int(data["encoding_size"]),
                   ComparatorConfig.from_dict(data["config"], source=source))

    def save(self, path) -> None:
        from facenas.utils.io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "Comparator":
        from facenas.utils.io import read_json

        return cls.from_dict(read_json(path), source=str(path))


# -- OFA's MLP accuracy predictor ------------------------------------------------------------------------
@dataclasses.dataclass
class MLPConfig(TypedConfig):
    """OFA's ``AccuracyPredictor``: ``num_layers`` x ``hidden_size`` ReLU layers, trained with MSE.

    Attributes:
        hidden_size, num_layers: OFA's 400 and 3.
        epochs, batch_size, lr, weight_decay: Adam training of the regression.
        seed: initialisation and shuffling seed.
    """

    hidden_size: int = 400
    num_layers: int = 3
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def check(self, source: str) -> None:
        for name in ("hidden_size", "num_layers", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{source}: {name}={getattr(self, name)} must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"{source}: need lr > 0 and weight_decay >= 0")


class MLPPredictor:
    """Accuracy regression from encodings; numpy inference (``predict``) for the search."""

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray], base: float, config: MLPConfig):
        self.weights = [np.asarray(w, dtype=np.float32) for w in weights]
        self.biases = [np.asarray(b, dtype=np.float32) for b in biases]
        self.base = float(base)
        self.config = config

    @classmethod
    def fit(cls, encodings: np.ndarray, accuracies: np.ndarray, config: MLPConfig | None = None) -> "MLPPredictor":
        """Fit OFA's MLP (targets are accuracies in [0, 1]; the mean is the fixed ``base_acc``)."""
        import torch
        from torch import nn

        config = config or MLPConfig()
        config.validate("MLP predictor config")
        x = torch.as_tensor(np.asarray(encodings, dtype=np.float32))
        y = torch.as_tensor(np.asarray(accuracies, dtype=np.float32))
        base = float(y.mean())
        g = torch.Generator().manual_seed(config.seed)
        layers: list[nn.Module] = []
        width = x.shape[1]
        for _ in range(config.num_layers):
            lin = nn.Linear(width, config.hidden_size)
            nn.init.kaiming_uniform_(lin.weight, a=math.sqrt(5), generator=g)
            nn.init.uniform_(lin.bias, -1 / math.sqrt(width), 1 / math.sqrt(width), generator=g)
            layers += [lin, nn.ReLU()]
            width = config.hidden_size
        out = nn.Linear(width, 1, bias=False)
        nn.init.kaiming_uniform_(out.weight, a=math.sqrt(5), generator=g)
        model = nn.Sequential(*layers, out)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs)
        n = len(x)
        for _ in range(config.epochs):
            perm = torch.randperm(n, generator=g)
            for start in range(0, n, config.batch_size):
                idx = perm[start:start + config.batch_size]
                loss = torch.mean((model(x[idx]).squeeze(1) + base - y[idx]) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
        linears = [m for m in model if isinstance(m, nn.Linear)]
        weights = [m.weight.detach().numpy().T.copy() for m in linears]
        biases = [m.bias.detach().numpy().copy() if m.bias is not None else np.zeros(m.out_features, np.float32)
                  for m in linears]
        return cls(weights, biases, base, config)

    def predict(self, encodings: np.ndarray) -> np.ndarray:
        """Predicted accuracies of ``(N, encoding_size)`` encodings."""
        h = np.asarray(encodings, dtype=np.float32)
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ w + b, 0.0)
        return (h @ self.weights[-1] + self.biases[-1])[:, 0] + self.base

    def to_dict(self) -> dict[str, Any]:
        return {"format": MLP_FORMAT, "config": self.config.to_dict(), "base": self.base,
                "weights": [w.tolist() for w in self.weights], "biases": [b.tolist() for b in self.biases]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "MLP predictor") -> "MLPPredictor":
        if data.get("format") != MLP_FORMAT:
            raise DataFormatError(source, f"not a facenas MLP predictor (format {MLP_FORMAT!r})")
        return cls([np.asarray(w) for w in data["weights"]], [np.asarray(b) for b in data["biases"]],
                   float(data["base"]), MLPConfig.from_dict(data["config"], source=source))

    def save(self, path) -> None:
        from facenas.utils.io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "MLPPredictor":
        from facenas.utils.io import read_json

        return cls.from_dict(read_json(path), source=str(path))
