"""The TNAS search network: one IResNet at full width and depth whose every width and depth is a
Gumbel-softmax mixture over its candidates (TNAS Eqs. 4-7).

The supernet owns the weights of the largest architecture (a :class:`~facenas.plugins.tnas.
network.TnasIResNet`, so its parameter names are IResNet's) and one vector of architecture logits
per choice of the :class:`~facenas.plugins.tnas.space.TnasSpace` (alpha for widths, beta for
depths). A forward pass with a :class:`Selection` per choice:

* runs each conv at ``max(C_I)`` output channels (the first filters of the full weight; inputs
  use the first input channels), normalises with BN *before* CWI (the BN's first channels), and
  mixes the candidate fragments ``O[:, :C_j]`` aligned by CWI with the re-normalised weights
  (Eq. 6); the activation follows the mixture;
* uses one selection for a stage's residual width (every block's second conv and the downsample
  conv of the stage share it -- their outputs are added);
* aggregates a stage's output over its selected depths, ``sum_l q_l O_l`` (Eq. 7), running only
  the blocks up to the deepest selected depth.

With one candidate per choice (weight 1) it computes exactly the derived network with the
corresponding weight slices (:meth:`TnasSupernet.extract`).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from facenas.nas.space import Value
from facenas.plugins.tnas.network import TnasIResNet
from facenas.plugins.tnas.ops import (
    Selection,
    categorical_entropy,
    depth_mixture,
    gumbel_select,
    weighted_mixture,
)
from facenas.plugins.tnas.space import TnasSpace, depth_label, inner_label, stage_width_label, stem_label


def _conv(conv: nn.Conv2d, x: torch.Tensor, out_channels: int) -> torch.Tensor:
    weight = conv.weight[:out_channels, :x.shape[1]]
    return F.conv2d(x, weight, None, conv.stride, conv.padding)


def _bn(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    # slices of the running statistics are views: F.batch_norm updates the full buffers in place
    return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                        bn.training, bn.momentum if bn.momentum is not None else 0.1, bn.eps)


def _prelu(prelu: nn.PReLU, x: torch.Tensor) -> torch.Tensor:
    return F.prelu(x, prelu.weight[:x.shape[1]])


class TnasSupernet(nn.Module):
    """Weights of the largest architecture of ``space`` plus architecture logits per choice.

    Args:
        space: the search space.
        init_std: standard deviation of the initial architecture logits (normal around 0, as TAS
            initialises them): nearly uniform distributions whose argmax is not biased towards
            the first (smallest) candidate by ties.
        generator: torch generator for the initial logits.
    """

    def __init__(self, space: TnasSpace, init_std: float = 1e-3, generator: torch.Generator | None = None):
        super().__init__()
        self.space = space
        self.net: TnasIResNet = space.build(space.largest())
        self.labels = space.labels()
        self.sizes = {label: space.candidate_sizes(label) for label in self.labels}
        self.arch_logits = nn.ParameterList(
            [nn.Parameter(torch.randn(len(self.sizes[label]), generator=generator) * float(init_std))
             for label in self.labels])

    # -- parameter groups ----------------------------------------------------------------------
    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.arch_logits)

    def logits(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.labels, self.arch_logits))

    def probs(self) -> dict[str, torch.Tensor]:
        """``p = softmax(alpha)`` of each choice (Eq. 4), differentiable."""
        return {label: F.softmax(a, dim=-1) for label, a in zip(self.labels, self.arch_logits)}

    # -- architecture distribution -------------------------------------------------------------
    def select(self, tau: float, num: int = 2, generator: torch.Generator | None = None,
               differentiable: bool = True) -> dict[str, Selection]:
        """One Gumbel selection per choice (Eqs. 5-6); weights detached unless ``differentiable``."""
        out = {}
        for label, a in zip(self.labels, self.arch_logits):
            out[label] = gumbel_select(a if differentiable else a.detach(), self.sizes[label], tau, num, generator)
        return out

    def fixed(self, sample: Mapping[str, Value]) -> dict[str, Selection]:
        """Single-candidate selections (weight 1) for a concrete sample."""
        s = self.space.validate(sample)
        out = {}
        for c in self.space.choices():
            i = c.index(s[c.label])
            out[c.label] = Selection.fixed(i, self.sizes[c.label][i])
        return out

    def argmax_sample(self) -> dict[str, Value]:
        """The derived architecture: each choice's candidate of maximum probability."""
        choices = self.space.choice_map()
        return {label: choices[label].values[int(torch.argmax(a.detach()))]
                for label, a in zip(self.labels, self.arch_logits)}

    def expected_flops(self) -> torch.Tensor:
        """``E_cost(A)`` (MACs), differentiable w.r.t. the architecture logits."""
        return self.space.expected_flops(self.probs())

    def entropy(self) -> dict[str, float]:
        """Mean entropy (nats) of the choices' distributions, and the same normalised by ``log|C|``."""
        with torch.no_grad():
            ents, norms = [], []
            for a in self.arch_logits:
                e = float(categorical_entropy(a))
                ents.append(e)
                if a.numel() > 1:
                    norms.append(e / float(torch.log(torch.tensor(float(a.numel())))))
        return {"arch_entropy": sum(ents) / len(ents), "arch_entropy_norm": sum(norms) / max(1, len(norms))}

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, selections: Mapping[str, Selection]) -> torch.Tensor:
        net = self.net
        sel = selections[stem_label()]
        y = _prelu(net.prelu, weighted_mixture(_bn(net.bn1, _conv(net.conv1, x, sel.max_value)), sel))
        for s in range(1, 5):
            layer = getattr(net, f"layer{s}")
            width = selections[stage_width_label(s)]
            depth = selections[depth_label(s)]
            outputs = []
            for b in range(1, depth.max_value + 1):
                block = layer[b - 1]
                inner = selections[inner_label(s, b)]
                h = _conv(block.conv1, _bn(block.bn1, y), inner.max_value)
                h = _prelu(block.prelu, weighted_mixture(_bn(block.bn2, h), inner))
                h = weighted_mixture(_bn(block.bn3, _conv(block.conv2, h, width.max_value)), width)
                if block.downsample is not None:
                    conv, bn = block.downsample[0], block.downsample[1]
                    identity = weighted_mixture(_bn(bn, _conv(conv, y, width.max_value)), width)
                else:
                    identity = y
                y = h + identity
                if b in depth.values:
                    outputs.append(y)
            y = depth_mixture(outputs, depth)
        y = torch.flatten(_bn(net.bn2, y), 1)
        fc = net.fc
        c = y.shape[1] // (fc.in_features // net.bn2.num_features)
        weight = fc.weight.view(fc.out_features, net.bn2.num_features, -1)[:, :c].reshape(fc.out_features, -1)
        return net.features(F.linear(y, weight, fc.bias))

    # -- the derived network with inherited weights ----------------------------------------------
    @torch.no_grad()
    def extract(self, sample: Mapping[str, Value]) -> TnasIResNet:
        """The standalone network of ``sample`` holding this supernet's weight slices."""
        child = self.space.build(sample)
        full = self.net.state_dict()
        for name, tensor in child.state_dict().items():
            src = full[name]
            if name.startswith("fc.weight"):
                out_f, in_f = tensor.shape
                spatial = src.shape[1] // self.net.bn2.num_features
                src = src.view(out_f, -1, spatial)[:, : in_f // spatial].reshape(out_f, in_f)
            elif src.dim() > 0:
                src = src[tuple(slice(0, n) for n in tensor.shape)]
            tensor.copy_(src)
        return child
