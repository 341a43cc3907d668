"""MobileFaceNet's ``act`` option: ReLU in place of PReLU, the default (PReLU) unchanged bit for bit."""
from __future__ import annotations

import pytest
import torch

from facenas.adapters.insightface.backbones import get_model
from facenas.errors import ConfigError


def _build(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("mbf", num_features=16, width_mult=0.25, input_size=32, **kwargs)


def test_default_is_prelu_and_identical_to_an_explicit_prelu():
    default, explicit = _build(), _build(act="prelu")
    assert sum(isinstance(m, torch.nn.PReLU) for m in default.modules()) > 10
    assert not any(isinstance(m, torch.nn.ReLU) for m in default.modules())
    a, b = default.state_dict(), explicit.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "act" not in default.facenas_network["kwargs"]  # the recorded baseline's description is unchanged


def test_relu_variant_has_the_same_convolutions_and_no_prelu():
    prelu, relu = _build().eval(), _build(act="relu").eval()
    assert not any(isinstance(m, torch.nn.PReLU) for m in relu.modules())
    n_prelu = sum(isinstance(m, torch.nn.PReLU) for m in prelu.modules())
    assert sum(isinstance(m, torch.nn.ReLU) for m in relu.modules()) == n_prelu
    p, r = prelu.state_dict(), relu.state_dict()
    slopes = {f"{name}.weight" for name, m in prelu.named_modules() if isinstance(m, torch.nn.PReLU)}
    assert set(p) - set(r) == slopes and set(r) <= set(p)  # only the PReLU slopes differ
    assert all(torch.equal(r[k], p[k]) for k in r)  # same seed, same weights
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert relu(x).shape == (2, 16) and not torch.allclose(relu(x), prelu(x))
    assert relu.facenas_network["kwargs"]["act"] == "relu"


def test_a_checkpointed_relu_network_rebuilds_from_its_description(tmp_path):
    from facenas.adapters.insightface.backbones import load_backbone, save_backbone

    net = _build(act="relu")
    save_backbone(net, tmp_path / "m.pt")
    back = load_backbone(tmp_path / "m.pt")
    assert not any(isinstance(m, torch.nn.PReLU) for m in back.modules())


def test_unknown_activation_names_the_choices():
    with pytest.raises(ConfigError, match=r"act='swish' is not one of \['prelu', 'relu'\]"):
        _build(act="swish")
