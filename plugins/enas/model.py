"""The ENAS face network: one class for the shared-weight supernet and standalone networks.

:class:`EnasNet` built without a sample is the *supernet* of ENAS (Pham et al. 2018, Sec. 2.1;
Zhu 2019, Sec. 3): every operation of every node, every skip connection's nonlinear module and
every factorized reduction exists once, and :meth:`EnasNet.activate` selects the arc that the
next forward passes run on those shared weights. Built with a sample it is a *standalone*
network holding only that arc's modules, under the same parameter names, so its weights can be
copied from the supernet (:meth:`EnasNet.extract`) or trained from scratch (Algorithm 2). Both
run the same forward code, so a standalone network with copied weights gives the supernet's
output for its arc.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from facenas.errors import FacenasError

from .arch import CellArc, EnasSpaceConfig, decode, needed_after, source_name
from .ops import EmbeddingHead, FactorizedReduction, NonLinear, Stem, make_op


class Node(nn.Module):
    """One node of a cell: its candidate operations (all of them in the supernet, one standalone)."""

    def __init__(self, channels: int, op_names: list[str]):
        super().__init__()
        self.ops = nn.ModuleDict({name: make_op(name, channels) for name in op_names})


class Cell(nn.Module):
    """A search block: ``num_nodes`` nodes; output = mean of the loose ends (see :mod:`.arch`)."""

    def __init__(self, channels: int, ops_per_node: list[list[str]]):
        super().__init__()
        self.nodes = nn.ModuleList([Node(channels, names) for names in ops_per_node])

    def forward(self, x: torch.Tensor, arc: CellArc) -> torch.Tensor:
        states = [x]
        for j, node in enumerate(self.nodes):
            states.append(node.ops[arc.ops[j]](states[arc.inputs[j]]))
        loose = arc.loose_ends()
        out = states[loose[0]]
        for j in loose[1:]:
            out = out + states[j]
        return out / len(loose) if len(loose) > 1 else out


def skip_key(cell: int, source: int) -> str:
    return f"cell{cell}_from_{source_name(source)}"


def reduce_key(after_cell: int, source: int) -> str:
    return f"after_cell{after_cell}_{source_name(source)}"


class EnasNet(nn.Module):
    """Supernet (``sample=None``) or standalone network (a validated ``sample``) of the space.

    Args:
        config: the space's shape.
        sample: the architecture of a standalone network; None for the shared-weight supernet.
    """

    def __init__(self, config: EnasSpaceConfig, sample: Mapping[str, Any] | None = None):
        super().__init__()
        cfg = config
        self.config = cfg
        self.input_size = (cfg.input_size, cfg.input_size)
        self.fixed: tuple[CellArc, ...] | None = decode(cfg, sample) if sample is not None else None
        self.active: tuple[CellArc, ...] | None = self.fixed
        self.stem = Stem(cfg.channels, cfg.stem_stride)
        cells = []
        for c in range(1, cfg.num_cells + 1):
            ch = cfg.cell_shape(c)[0]
            per_node = [[self.fixed[c - 1].ops[j]] if self.fixed else list(cfg.ops) for j in range(cfg.num_nodes)]
            cells.append(Cell(ch, per_node))
        self.cells = nn.ModuleList(cells)
        self.skips = nn.ModuleDict()
        for c in range(1, cfg.num_cells + 1):
            ch = cfg.cell_shape(c)[0]
            for s in cfg.skip_sources(c):
                if self.fixed is None or s in self.fixed[c - 1].skips:
                    self.skips[skip_key(c, s)] = NonLinear(ch, ch)
        self.reduce = nn.ModuleDict()
        for r in sorted(cfg.reductions):
            ch = cfg.cell_shape(r)[0]
            for s in range(0, r + 1):
                if self.fixed is None or needed_after(self.fixed, s, r):
                    self.reduce[reduce_key(r, s)] = FactorizedReduction(ch, 2 * ch)
        c_out, h_out, w_out = cfg.position_shape(cfg.num_cells)
        self.head = EmbeddingHead(c_out, h_out, w_out, cfg.embedding_size, cfg.dropout)

    @property
    def is_supernet(self) -> bool:
        return self.fixed is None

    def activate(self, sample: Mapping[str, Any]) -> None:
        """Run the next forward passes on the arc of ``sample`` (a supernet only)."""
        if not self.is_supernet:
            raise FacenasError("activate() selects an arc of the shared-weight supernet; this is a standalone network "
                               "of one architecture (build the supernet with EnasSpace.supernet())")
        self.active = decode(self.config, sample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arcs = self.active
        if arcs is None:
            raise FacenasError("the supernet has no active architecture; call activate(sample) before forward")
        cfg = self.config
        reductions = set(cfg.reductions)
        rep: dict[int, torch.Tensor] = {0: self.stem(x)}
        for c in range(1, cfg.num_cells + 1):
            arc = arcs[c - 1]
            inp = rep[c - 1]
            for s in arc.skips:
                inp = inp + self.skips[skip_key(c, s)](rep[s])
            rep[c] = self.cells[c - 1](inp, arc)
            if c in reductions:
                for s in list(rep):
                    if needed_after(arcs, s, c):
                        rep[s] = self.reduce[reduce_key(c, s)](rep[s])
                    else:
                        del rep[s]
        return self.head(rep[cfg.num_cells])

    def extract(self, sample: Mapping[str, Any]) -> "EnasNet":
        """A standalone network of ``sample`` holding copies of this supernet's shared weights."""
        net = EnasNet(self.config, sample)
        own = self.state_dict()
        net.load_state_dict({k: own[k].clone() for k in net.state_dict()}, strict=True)
        net.train(self.training)
        return net


@contextlib.contextmanager
def batch_stat_bn(model: nn.Module) -> Iterator[None]:
    """Evaluate with batch statistics in every BN layer without updating their running statistics.

    On shared weights the running statistics mix every arc's activations, so ENAS evaluates
    sampled arcs with batch statistics (its child model runs in training mode for the
    controller's reward); momentum 0 keeps the running buffers unchanged meanwhile.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.training, m.momentum) for m in bns]
    was_training = model.training
    model.eval()
    try:
        for m in bns:
            m.train()
            m.momentum = 0.0
        yield
    finally:
        for m, training, momentum in saved:
            m.momentum = momentum
            m.train(training)
        model.train(was_training)
