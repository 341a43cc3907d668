"""The ENAS face search space (Zhu 2019), registered as ``"enas"`` (and the tiny ``"enas_test"``).

See :mod:`.arch` for the labels and geometry and :mod:`.model` for the networks. Besides the
:class:`~facenas.nas.space.SearchSpace` interface the space gives the shared-weight supernet
(:meth:`EnasSpace.supernet`) and the latency-table hooks: one :class:`LatencyBlock` per node
operation, skip module, factorized reduction, stem and head, keyed by kind and input shape.
"""
from __future__ import annotations

from typing import Any, Mapping

from facenas.nas.space import SPACES, Choice, LatencyBlock, SearchSpace, Value

from .arch import EnasSpaceConfig, decode, input_label, needed_after, op_label, skip_label

#: The tiny configuration tests and the NNI test recipe use (32 x 32 input, 3 cells of 3 nodes).
TEST_CONFIG: dict[str, Any] = {"num_cells": 3, "num_nodes": 3, "channels": 8, "stem_stride": 1,
                               "reductions": [1, 2], "input_size": 32, "embedding_size": 16}
#: The paper-scale configuration (112 x 112, 5 search blocks, Sec. 4.2); not used on the CPU.
PAPER_CONFIG: dict[str, Any] = {"num_cells": 5, "num_nodes": 4, "channels": 32, "stem_stride": 1,
                                "reductions": [1, 2, 3], "input_size": 112, "embedding_size": 512}


def _shape_text(shape: tuple[int, int, int]) -> str:
    return "x".join(str(v) for v in shape)


class EnasSpace(SearchSpace):
    """DAG search blocks over separable convolutions and poolings, with skips (see :mod:`.arch`).

    Args: the fields of :class:`~facenas.plugins.enas.arch.EnasSpaceConfig`.
    """

    name = "enas"

    def __init__(self, **config: Any):
        self.cfg = EnasSpaceConfig.from_dict(config, source=f"space '{self.name}' config")
        self.input_size = (self.cfg.input_size, self.cfg.input_size)
        self._choices = self._make_choices()

    def _make_choices(self) -> list[Choice]:
        cfg = self.cfg
        out: list[Choice] = []
        for c in range(1, cfg.num_cells + 1):
            for j in range(1, cfg.num_nodes + 1):
                if j >= 2:
                    out.append(Choice(input_label(c, j), tuple(range(j))))
                out.append(Choice(op_label(c, j), tuple(cfg.ops)))
            for s in cfg.skip_sources(c):
                out.append(Choice(skip_label(c, s), (0, 1)))
        return out

    # -- SearchSpace ------------------------------------------------------------------------------
    def choices(self) -> list[Choice]:
        return list(self._choices)

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def build(self, sample: Mapping[str, Value]):
        """A standalone network of ``sample`` with fresh weights."""
        from .model import EnasNet

        return EnasNet(self.cfg, self.validate(sample))

    def supernet(self):
        """The shared-weight supernet (every op of every node once); ``activate(sample)`` picks an arc."""
        from .model import EnasNet

        return EnasNet(self.cfg, None)

    # -- latency tables ---------------------------------------------------------------------------
    def _block(self, kind: str, shape: tuple[int, int, int], extra: str = "") -> LatencyBlock:
        from .ops import EmbeddingHead, FactorizedReduction, NonLinear, Stem, make_op

        cfg = self.cfg
        c, h, w = shape
        key = f"enas.{kind}|in={_shape_text(shape)}" + (f"|{extra}" if extra else "")
        if kind == "stem":
            build = lambda: Stem(cfg.channels, cfg.stem_stride)  # noqa: E731
        elif kind == "head":
            build = lambda: EmbeddingHead(c, h, w, cfg.embedding_size, cfg.dropout)  # noqa: E731
        elif kind == "skip":
            build = lambda: NonLinear(c, c)  # noqa: E731
        elif kind == "reduce":
            build = lambda: FactorizedReduction(c, 2 * c)  # noqa: E731
        else:
            op = kind
            build = lambda: make_op(op, c)  # noqa: E731
        return LatencyBlock(key, shape, build)

    def _stem_block(self) -> LatencyBlock:
        cfg = self.cfg
        return self._block("stem", (3, cfg.input_size, cfg.input_size), f"out={cfg.channels}|s={cfg.stem_stride}")

    def _head_block(self) -> LatencyBlock:
        return self._block("head", self.cfg.position_shape(self.cfg.num_cells), f"emb={self.cfg.embedding_size}")

    def latency_blocks(self, sample: Mapping[str, Value]) -> list[LatencyBlock]:
        """Stem, every node's op, every chosen skip's module, every reduction run, head.

        Element-wise additions and the mean of loose ends are not listed (memory-bound and
        small next to the convolutions); the summed table latency therefore slightly
        underestimates a measured one (the runtime package's validation reports by how much).
        """
        cfg = self.cfg
        arcs = decode(cfg, self.validate(sample))
        blocks = [self._stem_block()]
        for c in range(1, cfg.num_cells + 1):
            shape = cfg.cell_shape(c)
            blocks += [self._block("skip", shape) for _ in arcs[c - 1].skips]
            blocks += [self._block(op, shape) for op in arcs[c - 1].ops]
            if c in cfg.reductions:
                blocks += [self._block("reduce", shape) for s in range(0, c + 1) if needed_after(arcs, s, c)]
        blocks.append(self._head_block())
        return blocks

    def all_latency_blocks(self) -> list[LatencyBlock]:
        """Every distinct block any architecture of the space can contain (one per key)."""
        cfg = self.cfg
        blocks = [self._stem_block()]
        for c in range(1, cfg.num_cells + 1):
            shape = cfg.cell_shape(c)
            if cfg.skip_sources(c):
                blocks.append(self._block("skip", shape))
            blocks += [self._block(op, shape) for op in cfg.ops]
            if c in cfg.reductions:
                blocks.append(self._block("reduce", shape))
        blocks.append(self._head_block())
        seen: dict[str, LatencyBlock] = {}
        for b in blocks:
            seen.setdefault(b.key, b)
        return list(seen.values())


class EnasTestSpace(EnasSpace):
    """The ENAS space in its tiny test configuration (a real registry entry, as timm's ``test_*``)."""

    name = "enas_test"

    def __init__(self, **config: Any):
        super().__init__(**{**TEST_CONFIG, **config})


@SPACES.register("enas")
def enas(**config: Any) -> EnasSpace:
    return EnasSpace(**config)


@SPACES.register("enas_test")
def enas_test(**config: Any) -> EnasTestSpace:
    return EnasTestSpace(**config)
