"""Geometry and architecture encoding of the ENAS face space (Zhu 2019, Secs. 3.1 and 4.2.2).

A network is a 3x3 conv + BN stem, ``num_cells`` search blocks ("cells") and an embedding head.
Factorized-reduction modules follow the cells listed in ``reductions`` (default after cells 1
and 2: "between the first three search blocks"), each halving height and width and doubling the
channels. A cell is a DAG of ``num_nodes`` nodes: node ``j`` applies one operation to one earlier
node of the cell (node 0 is the cell's input; node 1 always reads it), and the cell's output is
the mean of its loose ends (nodes no other node reads), as ENAS combines unused nodes. Cell ``c``
may also take *skip connections* from the stem and from cells ``1 .. c-2`` (cell ``c-1`` is its
direct input): each skip passes through the same factorized reductions as the main path ("feature
reduction at similar parallel positions") and a fixed nonlinear module (ReLU, 1x1 conv, BN), and
is added to the cell's input.

An architecture is a flat sample with these labels (``c`` = 1..num_cells, ``j`` = 1..num_nodes):

* ``cell{c}/node{j}/input`` (``j >= 2``): the index ``0 .. j-1`` of the node it reads;
* ``cell{c}/node{j}/op``: one of the op names (``sep_conv_3x3`` ...);
* ``cell{c}/skip/{source}`` (``source`` = ``stem`` or ``cell{k}``, ``k <= c-2``): 0 or 1.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from facenas.config import TypedConfig
from facenas.errors import ConfigError

from .ops import OPS


@dataclasses.dataclass
class EnasSpaceConfig(TypedConfig):
    """Shape of the ENAS face space (defaults: the CPU-scale configuration, 64 x 64 input).

    Attributes:
        num_cells: search blocks (the paper uses 5).
        num_nodes: nodes L per search block.
        channels: channels of the stem and of the first search block.
        stem_stride: stride of the stem convolution (2 at CPU scale, to start at 32 x 32).
        reductions: cells followed by a factorized-reduction module (1-based, < num_cells).
        input_size: square input resolution.
        embedding_size: output embedding dimension.
        ops: the node operations to choose from (a subset of ``OPS``, in that order).
        skip_connections: whether cells choose skip connections from earlier cells.
        dropout: dropout before the head's FC layer (the paper's DropBlock stand-in; 0 = off).
    """

    num_cells: int = 5
    num_nodes: int = 4
    channels: int = 16
    stem_stride: int = 2
    reductions: tuple[int, ...] = (1, 2)
    input_size: int = 64
    embedding_size: int = 128
    ops: tuple[str, ...] = OPS
    skip_connections: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.reductions, list):
            object.__setattr__(self, "reductions", tuple(self.reductions))
        if isinstance(self.ops, list):
            object.__setattr__(self, "ops", tuple(self.ops))

    def check(self, source: str) -> None:
        for name in ("num_cells", "num_nodes", "channels", "stem_stride", "input_size", "embedding_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{source}: {name} = {getattr(self, name)} must be >= 1")
        bad = [r for r in self.reductions if not 1 <= r < self.num_cells]
        if bad or len(set(self.reductions)) != len(self.reductions):
            raise ConfigError(f"{source}: reductions = {list(self.reductions)} must be distinct cell numbers in "
                              f"1..{self.num_cells - 1} (a reduction follows a cell and precedes the next one)")
        unknown = [o for o in self.ops if o not in OPS]
        if unknown or not self.ops or len(set(self.ops)) != len(self.ops):
            raise ConfigError(f"{source}: ops = {list(self.ops)} must be distinct names from {list(OPS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{source}: dropout = {self.dropout} must be in [0, 1)")

    # -- geometry ---------------------------------------------------------------------------------
    def reductions_upto(self, position: int) -> int:
        """How many reductions happen after cells ``<= position`` (position 0 = the stem)."""
        return sum(1 for r in self.reductions if r <= position)

    def position_shape(self, position: int) -> tuple[int, int, int]:
        """``(C, H, W)`` of every representation after cell ``position`` and its reduction.

        Position 0 is the stem's output; cell ``c`` reads position ``c - 1``.
        """
        n = self.reductions_upto(position)
        size = math.ceil(self.input_size / self.stem_stride)
        for _ in range(n):
            size = math.ceil(size / 2)
        return (self.channels * 2 ** n, size, size)

    def cell_shape(self, cell: int) -> tuple[int, int, int]:
        """Input (= output) shape of cell ``cell`` (1-based)."""
        return self.position_shape(cell - 1)

    def skip_sources(self, cell: int) -> list[int]:
        """Sources cell ``cell`` may take a skip from: 0 (stem) and cells ``1 .. cell-2``."""
        return list(range(0, cell - 1)) if self.skip_connections else []


def source_name(source: int) -> str:
    return "stem" if source == 0 else f"cell{source}"


def input_label(cell: int, node: int) -> str:
    return f"cell{cell}/node{node}/input"


def op_label(cell: int, node: int) -> str:
    return f"cell{cell}/node{node}/op"


def skip_label(cell: int, source: int) -> str:
    return f"cell{cell}/skip/{source_name(source)}"


@dataclasses.dataclass(frozen=True)
class CellArc:
    """One cell's decisions.

    Attributes:
        inputs: for nodes 1..L, the node each one reads (0 = the cell's input).
        ops: for nodes 1..L, the operation name.
        skips: the sources (0 = stem, k = cell k) whose skip connections feed the cell.
    """

    inputs: tuple[int, ...]
    ops: tuple[str, ...]
    skips: tuple[int, ...]

    def loose_ends(self) -> list[int]:
        """Nodes (1-based) that no later node reads: their mean is the cell's output."""
        used = set(self.inputs)
        return [j for j in range(1, len(self.inputs) + 1) if j not in used]


def decode(cfg: EnasSpaceConfig, sample: Mapping[str, Any]) -> tuple[CellArc, ...]:
    """The per-cell decisions of a (validated) sample."""
    cells = []
    for c in range(1, cfg.num_cells + 1):
        inputs = tuple([0] + [int(sample[input_label(c, j)]) for j in range(2, cfg.num_nodes + 1)])
        ops = tuple(str(sample[op_label(c, j)]) for j in range(1, cfg.num_nodes + 1))
        skips = tuple(s for s in cfg.skip_sources(c) if int(sample[skip_label(c, s)]) == 1)
        cells.append(CellArc(inputs, ops, skips))
    return tuple(cells)


def needed_after(arcs: tuple[CellArc, ...], source: int, position: int) -> bool:
    """Whether ``source``'s representation is read by a cell after ``position`` (main path or skip)."""
    if source == position:
        return True
    return any(source in arcs[c - 1].skips for c in range(position + 1, len(arcs) + 1))
