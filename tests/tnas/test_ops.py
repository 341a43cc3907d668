"""CWI, the Gumbel selection and mixtures (Eqs. 5-7) and the cost loss (Eq. 11) against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from facenas.plugins.tnas.ops import (
    Selection,
    categorical_entropy,
    channel_wise_interpolation,
    cosine_lr,
    cost_loss,
    cost_regime,
    depth_mixture,
    gumbel_select,
    gumbel_softmax_probs,
    linear_temperature,
    weighted_mixture,
)


def chans(*values: float) -> torch.Tensor:
    """A (1, C, 1, 2) tensor whose channel c holds [v_c, 10 v_c] (so spatial positions stay distinct)."""
    v = torch.tensor(values, dtype=torch.float32)
    return torch.stack([v, 10 * v], dim=-1).reshape(1, len(values), 1, 2)


def test_cwi_grows_2_to_3_channels_by_hand():
    out = channel_wise_interpolation(chans(1.0, 3.0), 3)
    # windows [0,1), [0,2), [1,2): x0, mean(x0, x1), x1
    assert torch.equal(out, chans(1.0, 2.0, 3.0))


def test_cwi_grows_2_to_4_and_shrinks_4_to_2_and_3_to_2_by_hand():
    assert torch.equal(channel_wise_interpolation(chans(1.0, 3.0), 4), chans(1.0, 1.0, 3.0, 3.0))
    assert torch.equal(channel_wise_interpolation(chans(1.0, 3.0, 5.0, 7.0), 2), chans(2.0, 6.0))
    # 3 -> 2: windows [0, 2) and [1, 3)
    assert torch.allclose(channel_wise_interpolation(chans(1.0, 2.0, 6.0), 2), chans(1.5, 4.0))


def test_cwi_keeps_same_width_and_spatial_layout():
    x = torch.randn(2, 5, 3, 4)
    assert channel_wise_interpolation(x, 5) is x
    y = channel_wise_interpolation(x, 7)
    assert y.shape == (2, 7, 3, 4)
    # every output channel is a mean of input channels at the same position
    assert torch.allclose(y[:, 0], x[:, 0])
    assert torch.allclose(y[:, -1], x[:, -1])
    with pytest.raises(ValueError):
        channel_wise_interpolation(torch.zeros(3, 4), 2)


def test_gumbel_softmax_probs_eq5_by_hand():
    logits = torch.tensor([0.0, math.log(3.0)])  # p = [1/4, 3/4]
    noise = torch.tensor([0.5, -0.5])
    tau = 2.0
    got = gumbel_softmax_probs(logits, tau, noise)
    z = [(math.log(0.25) + 0.5) / tau, (math.log(0.75) - 0.5) / tau]
    want = torch.tensor([math.exp(z[0]), math.exp(z[1])]) / (math.exp(z[0]) + math.exp(z[1]))
    assert torch.allclose(got, want, atol=1e-6)


def test_gumbel_select_renormalises_over_the_sampled_pair_eq6():
    # with huge noise on candidates 1 and 3 the multinomial picks exactly {1, 3}
    logits = torch.tensor([0.0, 1.0, 2.0, 0.5], requires_grad=True)
    noise = torch.tensor([-50.0, 50.0, -50.0, 50.0])
    tau = 4.0
    sel = gumbel_select(logits, [4, 8, 12, 16], tau, num=2, noise=noise, generator=torch.Generator().manual_seed(0))
    assert sel.indices == [1, 3] and sel.values == [8, 16] and sel.max_value == 16
    logp = torch.log_softmax(logits.detach(), -1)
    z1, z3 = (logp[1] + 50) / tau, (logp[3] + 50) / tau
    w1 = math.exp(z1) / (math.exp(z1) + math.exp(z3))
    assert torch.allclose(sel.weights, torch.tensor([w1, 1 - w1]), atol=1e-6)
    # differentiable w.r.t. the logits; only the sampled candidates get gradient (the shared
    # normaliser of log p cancels in the re-normalisation)
    sel.weights[0].backward()
    assert logits.grad[1] != 0 and logits.grad[3] != 0
    assert abs(float(logits.grad[0])) < 1e-6 and abs(float(logits.grad[2])) < 1e-6


def test_gumbel_select_draws_from_the_generator_and_clips_num():
    logits = torch.zeros(5)
    a = gumbel_select(logits, [1, 2, 3, 4, 5], 1.0, 2, torch.Generator().manual_seed(7))
    b = gumbel_select(logits, [1, 2, 3, 4, 5], 1.0, 2, torch.Generator().manual_seed(7))
    assert a.indices == b.indices and torch.equal(a.weights, b.weights)
    assert len(set(a.indices)) == 2
    one = gumbel_select(torch.zeros(1), [3], 1.0, 2, torch.Generator().manual_seed(0))
    assert one.values == [3] and float(one.weights[0]) == 1.0
    # at a low temperature the sample concentrates on the most probable candidate
    peaked = torch.tensor([0.0, 0.0, 8.0, 0.0, 0.0])
    g = torch.Generator().manual_seed(1)
    hits = sum(2 in gumbel_select(peaked, [1, 2, 3, 4, 5], 0.1, 1, g).indices for _ in range(50))
    assert hits >= 48


def test_weighted_mixture_eq6_by_hand():
    # x computed at max(C_I) = 3 channels; candidates C = {2, 3} with weights 0.25 / 0.75
    x = chans(1.0, 3.0, 8.0)
    sel = Selection([0, 1], [2, 3], torch.tensor([0.25, 0.75]))
    out = weighted_mixture(x, sel)
    # CWI(x[:, :2], 3) = [1, 2, 3]; x[:, :3] = [1, 3, 8]
    want = chans(0.25 * 1 + 0.75 * 1, 0.25 * 2 + 0.75 * 3, 0.25 * 3 + 0.75 * 8)
    assert torch.allclose(out, want)
    with pytest.raises(ValueError):
        weighted_mixture(chans(1.0, 2.0), sel)
    fixed = Selection.fixed(1, 3)
    assert weighted_mixture(x, fixed) is x


def test_depth_mixture_eq7_by_hand():
    o1, o2 = chans(1.0, 2.0), chans(5.0, 6.0)
    out = depth_mixture([o1, o2], Selection([0, 1], [1, 2], torch.tensor([0.4, 0.6])))
    assert torch.allclose(out, chans(0.4 * 1 + 0.6 * 5, 0.4 * 2 + 0.6 * 6))


def test_cost_loss_three_regimes():
    target, t = 1e6, 0.05
    e = torch.tensor(9e5, requires_grad=True)
    # above: F >= (1 + t) R -> log E, gradient pushes E down
    loss, regime = cost_loss(e, 1.05e6, target, t)
    assert regime == "above" and torch.isclose(loss, torch.log(torch.tensor(9e5)))
    loss.backward()
    assert e.grad > 0 and math.isclose(float(e.grad), 1 / 9e5, rel_tol=1e-5)
    # within: (1 - t) R < F < (1 + t) R -> 0 (and no gradient)
    e.grad = None
    loss, regime = cost_loss(e, 1.04e6, target, t)
    assert regime == "within" and float(loss.detach()) == 0.0
    loss.backward()
    assert float(e.grad) == 0.0
    # below: F <= (1 - t) R -> Eq. 11's 1/log E, gradient pushes E up
    e.grad = None
    loss, regime = cost_loss(e, 0.95e6, target, t, below="inv_log")
    assert regime == "below" and math.isclose(loss.item(), 1 / math.log(9e5), rel_tol=1e-6)
    loss.backward()
    assert e.grad < 0 and math.isclose(float(e.grad), -1 / (9e5 * math.log(9e5) ** 2), rel_tol=1e-4)
    # below, TAS form -log E: log(E)^2 times the gradient of 1/log E
    e.grad = None
    loss, regime = cost_loss(e, 0.5e6, target, t, below="neg_log")
    assert regime == "below" and math.isclose(loss.item(), -math.log(9e5), rel_tol=1e-6)
    loss.backward()
    assert math.isclose(float(e.grad), -1 / 9e5, rel_tol=1e-5)


def test_cost_regime_boundaries_and_errors():
    assert cost_regime(105, 100, 0.05) == "above"
    assert cost_regime(104.99, 100, 0.05) == "within"
    assert cost_regime(95.01, 100, 0.05) == "within"
    assert cost_regime(95, 100, 0.05) == "below"
    with pytest.raises(ValueError):
        cost_loss(torch.tensor(2.0), 1.0, 1.0, tolerance=1.5)
    with pytest.raises(ValueError):
        cost_loss(torch.tensor(2.0), 1.0, 1.0, below="sqrt")
    with pytest.raises(ValueError, match="E > 1"):
        cost_loss(torch.tensor(0.5), 0.1, 1.0, below="inv_log")


def test_schedules_and_entropy():
    assert linear_temperature(0, 101) == 10.0
    assert math.isclose(linear_temperature(100, 101), 0.1)
    assert math.isclose(linear_temperature(50, 101), 5.05)
    assert cosine_lr(0, 100, 0.1) == 0.1
    assert math.isclose(cosine_lr(50, 100, 0.1), 0.05)
    assert math.isclose(cosine_lr(100, 100, 0.1), 0.0, abs_tol=1e-12)
    assert math.isclose(float(categorical_entropy(torch.zeros(8))), math.log(8), rel_tol=1e-6)
    assert float(categorical_entropy(torch.tensor([0.0, 100.0]))) < 1e-6
