"""The search network: a derived architecture run through the supernet equals its extracted standalone network;
mixtures carry gradients to the architecture logits; expected FLOPs and argmax follow the logits."""
from __future__ import annotations

import numpy as np
import torch

from facenas.plugins.tnas.supernet import TnasSupernet


def test_fixed_selection_equals_extracted_network(test_space):
    torch.manual_seed(0)
    net = TnasSupernet(test_space, generator=torch.Generator().manual_seed(0))
    # non-trivial BN statistics and weights
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(8, 3, 32, 32), net.fixed(test_space.largest()))
    x = torch.randn(3, 3, 32, 32)
    rng = np.random.default_rng(0)
    for sample in [test_space.smallest(), test_space.largest()] + [test_space.sample(rng) for _ in range(4)]:
        child = net.extract(sample)
        net.eval()
        child.eval()
        assert torch.allclose(net(x, net.fixed(sample)), child(x), atol=1e-5)
        assert child.state_dict().keys() == test_space.build(sample).state_dict().keys()


def test_mixture_forward_and_gradients_reach_the_sampled_logits(test_space):
    net = TnasSupernet(test_space, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(0)
    sel = net.select(tau=5.0, num=2, generator=g)
    out = net(torch.randn(4, 3, 32, 32), sel)
    assert out.shape == (4, 16) and torch.isfinite(out).all()
    target = torch.randn(4, 16)
    loss = (out - target).pow(2).sum()
    grads = torch.autograd.grad(loss, net.arch_parameters(), allow_unused=True)
    by_label = dict(zip(net.labels, grads))
    stem = by_label["stem/width_ratio"]
    picked = sel["stem/width_ratio"].indices
    assert stem is not None and all(stem[i] != 0 for i in picked)
    assert all(abs(float(stem[i])) < 1e-6 for i in range(len(stem)) if i not in picked)
    # a weight step's selection carries no gradient to the logits
    sel = net.select(tau=5.0, num=2, generator=g, differentiable=False)
    assert not any(s.weights.requires_grad for s in sel.values())


def test_argmax_expected_flops_and_entropy_follow_the_logits(test_space):
    net = TnasSupernet(test_space, init_std=0.0)
    assert net.entropy()["arch_entropy_norm"] > 0.999
    with torch.no_grad():
        for a in net.arch_logits:
            a[-1] = 10.0
    assert net.argmax_sample() == test_space.largest()
    assert abs(net.expected_flops().item() / test_space.flops(test_space.largest()) - 1) < 1e-3
    assert net.entropy()["arch_entropy"] < 0.01
