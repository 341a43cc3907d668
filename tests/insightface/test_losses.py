"""Margin heads against hand-computed values, in both gradient modes.

Worked example used throughout: s = 64, a target cosine of 0.5 (theta = pi/3 = 1.047198).
* ArcFace m=0.5: 64 cos(1.547198) = 64 sin(0.023598) = 1.51018; textbook slope
  64 sin(theta+m)/sin(theta) = 64 * 0.999722 / 0.866025 = 73.8803; arcface_torch slope 64.
* CosFace m=0.4: 64 (0.5 - 0.4) = 6.4, slope 64.   N-Softmax: 64 * 0.5 = 32, slope 64.
* Li-ArcFace m=0.45: target 64 (pi - 2 (pi/3 + 0.45)) / pi = 64 (1.047198 - 0.9) / pi = 2.99868;
  non-target 64 (pi - 2 pi/3) / pi = 21.3333; slope 2 s / (pi sin theta) = 128 / (pi * 0.866025) = 47.0467.
* Combined (1.2, 0.3, 0.2): 64 (cos(1.2 * 1.047198 + 0.3) - 0.2) = 64 (cos(1.556637) - 0.2) = -11.8938,
  slope 64 * 1.2 sin(1.556637) / sin(theta) = 88.6721.
"""
from __future__ import annotations

import pytest
import torch

from facenas.adapters.insightface.losses import (
    HEADS,
    ArcFace,
    CombinedMarginLoss,
    CosFace,
    LiArcFace,
    NormSoftmax,
    build_margin_head,
)
from facenas.errors import ConfigError


def _target_and_slope(head, cos_target=0.5, cos_other=-0.2):
    """Value of the target logit and d(target logit)/d(cos target) for a 1x3 example with label 0."""
    cos = torch.tensor([[cos_target, cos_other, 0.1]], dtype=torch.float64, requires_grad=True)
    out = head(cos, torch.tensor([0]))
    (grad,) = torch.autograd.grad(out[0, 0], cos)
    return out.detach()[0], grad[0]


@pytest.mark.parametrize("mode,slope", [("arcface_torch", 64.0), ("textbook", 73.8803)])
def test_arcface_value_and_both_gradients(mode, slope):
    out, grad = _target_and_slope(ArcFace(s=64, margin=0.5, grad_mode=mode))
    assert out[0].item() == pytest.approx(1.51018, abs=1e-4)
    assert out[1].item() == pytest.approx(64 * -0.2) and out[2].item() == pytest.approx(6.4)
    assert grad[0].item() == pytest.approx(slope, abs=1e-3)
    assert grad[1].item() == 0.0  # the target logit does not depend on other classes


@pytest.mark.parametrize("mode", ["arcface_torch", "textbook"])
def test_cosface_and_softmax_values(mode):
    out, grad = _target_and_slope(CosFace(s=64, margin=0.4, grad_mode=mode))
    assert out[0].item() == pytest.approx(6.4) and grad[0].item() == pytest.approx(64.0)
    out, grad = _target_and_slope(NormSoftmax(s=64, grad_mode=mode))
    assert out.tolist() == pytest.approx([32.0, -12.8, 6.4]) and grad[0].item() == pytest.approx(64.0)


@pytest.mark.parametrize("mode,slope", [("textbook", 47.0467), ("arcface_torch", 64.0)])
def test_li_arcface_values_and_gradients(mode, slope):
    out, grad = _target_and_slope(LiArcFace(s=64, m=0.45, grad_mode=mode), cos_other=0.5)
    assert out[0].item() == pytest.approx(2.99868, abs=1e-4)
    assert out[1].item() == pytest.approx(21.3333, abs=1e-4)  # non-target: s (pi - 2 theta) / pi
    assert grad[0].item() == pytest.approx(slope, abs=1e-3)


def test_li_arcface_is_linear_and_monotonic_in_the_angle():
    theta = torch.linspace(0.05, 3.0, 50, dtype=torch.float64)
    head = LiArcFace(s=64, m=0.45)
    logits = head(torch.cos(theta)[:, None], torch.zeros(50, dtype=torch.long))[:, 0]
    expected = 64 * (torch.pi - 2 * (theta + 0.45)) / torch.pi
    assert torch.allclose(logits, expected, atol=1e-6)
    assert (logits[1:] < logits[:-1]).all()


@pytest.mark.parametrize("mode,slope", [("textbook", 88.6721), ("arcface_torch", 64.0)])
def test_combined_margin_general_formula(mode, slope):
    out, grad = _target_and_slope(CombinedMarginLoss(64, 1.2, 0.3, 0.2, grad_mode=mode))
    assert out[0].item() == pytest.approx(-11.8938, abs=1e-3)
    assert grad[0].item() == pytest.approx(slope, abs=1e-3)


def test_margin_list_convention_and_labels_minus_one():
    arc = build_margin_head("combined", (1.0, 0.5, 0.0))
    cos = torch.tensor([[0.5, 0.2], [0.5, 0.2]])
    out = arc(cos, torch.tensor([0, -1]))  # row 1's class lives on another PartialFC shard
    assert out[0, 0].item() == pytest.approx(1.51018, abs=1e-4)
    assert out[1].tolist() == pytest.approx([32.0, 12.8])  # untouched, only scaled
    assert torch.equal(cos, torch.tensor([[0.5, 0.2], [0.5, 0.2]]))  # no in-place modification
    cosface = build_margin_head("combined", (1.0, 0.0, 0.4))(cos, torch.tensor([1, 0]))
    assert cosface[0, 1].item() == pytest.approx(64 * (0.2 - 0.4))


def test_interclass_filtering_zeroes_confusing_negatives():
    head = CombinedMarginLoss(64, 1.0, 0.0, 0.0, interclass_filtering_threshold=0.3)
    cos = torch.tensor([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1]])
    out = head(cos, torch.tensor([0, -1]))
    # row 0 keeps its target (0.9) and drops the negative above 0.3; row 1 has no target here
    assert torch.allclose(out, torch.tensor([[57.6, 0.0, 6.4], [0.0, 0.0, 6.4]]))


def test_heads_registry_and_bad_margins():
    assert {"combined", "arcface", "cosface", "softmax", "li_arcface"} <= set(HEADS.names())
    assert isinstance(build_margin_head("li_arcface", (1.0, 0.4, 0.0)), LiArcFace)
    assert build_margin_head("li_arcface", (1.0, 0.4, 0.0)).m == 0.4
    assert build_margin_head("arcface", (1.0, 0.5, 0.0)).grad_mode == "arcface_torch"  # stated default
    assert build_margin_head("arcface", (1.0, 0.5, 0.0), grad_mode="textbook").grad_mode == "textbook"
    with pytest.raises(ConfigError, match="form"):
        build_margin_head("cosface", (1.0, 0.5, 0.0))
    with pytest.raises(ConfigError, match="grad_mode"):
        ArcFace(grad_mode="fast")
    with pytest.raises(ConfigError, match="three numbers"):
        build_margin_head("combined", (1.0, 0.5))


def test_textbook_gradient_stays_finite_at_the_boundary():
    cos = torch.tensor([[1.0, -1.0, 0.0]], requires_grad=True)
    for head in (ArcFace(grad_mode="textbook"), LiArcFace()):
        out = head(cos, torch.tensor([0]))
        (grad,) = torch.autograd.grad(out.sum(), cos)
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()
