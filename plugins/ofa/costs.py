"""Additive per-block costs of OFA subnets: latency from a lookup table, or FLOPs (Algorithm 1, line 6).

The paper predicts a subnet's latency as the sum of its layers' latencies in a per-device lookup
table (Sec. IV-B, step 4). Here the prediction is the one latency model's
(:class:`~facenas.adapters.runtime.latency_model.LatencyModel`: the table's corrected block sum, in
the same milliseconds as every other method and ``facenas lut predict``), folded exactly into
per-block costs by :meth:`LatencyModel.additive`.

Because only a stage's first block strides or changes width, a block's cost depends on (stage,
first-or-later position, kernel size, expand ratio) only, so the whole table folds into a
``(stages, max_depth, kernels, expand ratios)`` array plus the fixed parts (first conv, first
block, head); the cost of a batch of genomes is one gather and a masked sum.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from facenas.adapters.runtime.latency_model import LatencyModel
from facenas.errors import FacenasError

from .space import OFASpace


def _is_entries(spec: Any) -> bool:
    """An in-line ``{block key: ms}`` table (not a ``{"lut": ...}`` / ``{"table": ...}`` spec)."""
    return isinstance(spec, Mapping) and not (set(spec) <= {"lut", "table"})


class InfeasibleConstraintError(FacenasError):
    """No subnet of the space meets the constraint; the message gives the smallest reachable cost."""


def _block_table(space: OFASpace, cost) -> np.ndarray:
    """``cost(block spec, input size)`` of every (stage, depth, kernel, expand) block choice, as an array."""
    lay = space.layout
    table = np.zeros((lay.num_stages, lay.max_depth, len(space.kernel_sizes), len(space.expand_ratios)))
    for s in range(lay.num_stages):
        for d in range(lay.max_depth):
            size = lay.block_input_size(s, d)
            for i, k in enumerate(space.kernel_sizes):
                for j, e in enumerate(space.expand_ratios):
                    table[s, d, i, j] = cost(space.block_spec(s, d, k, e), size)
    return table


@dataclasses.dataclass
class AdditiveCost:
    """Cost of a subnet = ``fixed`` + the sum of its active blocks' entries of ``table``.

    Attributes:
        name: metric name (``latency_ms`` or ``mflops``).
        fixed: cost of the parts every subnet has.
        table: ``(S, D, nK, nE)`` cost of the block at stage ``s``, position ``d`` with the
            kernel / expand candidates of those indices.
        unit: human-readable unit for messages.
    """

    space: OFASpace
    name: str
    fixed: float
    table: np.ndarray
    unit: str = ""

    @classmethod
    def flops(cls, space: OFASpace) -> "AdditiveCost":
        """MFLOPs (multiply-accumulates / 1e6), analytic: equals ``count_flops`` of the built subnet."""
        table = _block_table(space, lambda spec, size: space.block_flops(spec, size) / 1e6)
        return cls(space, "mflops", space.fixed_flops() / 1e6, table, "MFLOPs")

    @classmethod
    def latency(cls, space: OFASpace, model: LatencyModel | Mapping[str, float] | Any) -> "AdditiveCost":
        """Predicted latency (ms) of :class:`LatencyModel` ``model`` (or of an in-line ``{block key: ms}``
        table of :meth:`OFASpace.all_latency_blocks`): ``of_sample(s) == model.predict(s)``.

        A block the table lacks raises :class:`~facenas.adapters.runtime.lut.MissingLatencyEntry`.
        """
        if not isinstance(model, LatencyModel):
            model = LatencyModel.from_entries(space, model) if _is_entries(model) else LatencyModel.from_spec(model, space)
        base, per = model.additive()
        table = _block_table(space, lambda spec, size: per[space.block_key(spec, size)])
        fixed = base + sum(per[b.key] for b in space.fixed_latency_blocks())
        return cls(space, "latency_ms", fixed, table, "ms")

    # -- evaluation --------------------------------------------------------------------------------
    def of_genomes(self, genomes: np.ndarray) -> np.ndarray:
        """Costs of ``(N, n_choices)`` genomes, ``(N,)`` float64."""
        g = self.space.genome_layout
        genomes = np.asarray(genomes)
        S, D = self.table.shape[:2]
        k = genomes[:, g.kernel]  # (N, S, D)
        e = genomes[:, g.expand]
        vals = self.table[np.arange(S)[None, :, None], np.arange(D)[None, None, :], k, e]
        return self.fixed + (vals * self.space.active_mask(genomes)).sum(axis=(1, 2))

    def of_sample(self, sample) -> float:
        return float(self.of_genomes(self.space.genome(sample)[None])[0])

    def minimum(self) -> float:
        """The smallest cost any subnet reaches (exact: per stage, the best depth of the cheapest blocks)."""
        per_block = self.table.min(axis=(2, 3))  # (S, D)
        total = self.fixed
        for s in range(per_block.shape[0]):
            total += min(per_block[s, :d].sum() for d in self.space.depths)
        return float(total)

    def maximum(self) -> float:
        per_block = self.table.max(axis=(2, 3))
        return float(self.fixed + sum(max(per_block[s, :d].sum() for d in self.space.depths)
                                      for s in range(per_block.shape[0])))

    def check_feasible(self, bound: float) -> None:
        """Fail fast, naming the smallest reachable cost, when no subnet meets ``cost <= bound``."""
        low = self.minimum()
        if bound < low:
            raise InfeasibleConstraintError(
                f"no subnet of space '{self.space.name}' has {self.name} <= {bound:g} {self.unit}: the smallest "
                f"reachable is {low:.4g} {self.unit} (largest {self.maximum():.4g}); raise the bound to at least "
                f"{low:.4g}")

    def cheapest_genome(self) -> np.ndarray:
        """A genome reaching :meth:`minimum` (canonical: inactive blocks at index 0)."""
        g = self.space.genome_layout
        genome = np.zeros(len(g.sizes), dtype=np.int64)
        for s in range(self.table.shape[0]):
            best_d = min(range(len(self.space.depths)),
                         key=lambda i: self.table[s, :self.space.depths[i]].min(axis=(1, 2)).sum())
            genome[g.depth[s]] = best_d
            for d in range(self.space.depths[best_d]):
                ki, ei = np.unravel_index(np.argmin(self.table[s, d]), self.table[s, d].shape)
                genome[g.kernel[s, d]], genome[g.expand[s, d]] = ki, ei
        return genome
