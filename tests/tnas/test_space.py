"""The TNAS space: labels, derived networks, analytic and expected FLOPs, IResNet compatibility, latency blocks."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from facenas.adapters.insightface.backbones import get_model
from facenas.errors import ConfigError
from facenas.nas.flops import count_flops
from facenas.nas.space import SPACES, InvalidSampleError, build_from_description, create_space
from facenas.plugins.tnas.space import TEST_SPACE, TnasSpace, ratio_channels


def test_registered_with_flat_readable_labels(test_space):
    assert "tnas" in SPACES.names()
    labels = test_space.labels()
    assert labels[0] == "stem/width_ratio"
    assert "stage2/depth" in labels and "stage2/width_ratio" in labels
    assert "stage2/block2/conv1/width_ratio" in labels and "stage1/block2/conv1/width_ratio" not in labels
    assert test_space.choice_map()["stage4/depth"].values == (1, 2)
    assert test_space.choice_map()["stem/width_ratio"].values == (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def test_paper_half_resnet50_preset():
    space = TnasSpace(base="r50", width_mult=0.5)
    assert space.layers == [3, 4, 14, 3]
    assert space.stem_width == 32 and space.stage_widths == [32, 64, 128, 256]
    assert space.depth_candidates[2] == list(range(1, 15))
    # width-only (TNAS-W) and depth-only (TNAS-D) variants are configurations
    w_only = TnasSpace(base="r18", depth_candidates=[[2]] * 4)
    assert all(len(w_only.choice_map()[f"stage{s}/depth"].values) == 1 for s in range(1, 5))
    d_only = TnasSpace(base="r18", width_ratios=[1.0])
    assert d_only.flops(d_only.smallest()) < d_only.flops(d_only.largest())


@pytest.mark.parametrize("bad", [
    {"layers": [1, 2, 3]}, {"width_ratios": [0.5, 0.3]}, {"width_ratios": [0.0, 1.0]},
    {"depth_candidates": [[1], [1], [1], [2]], "layers": [1, 1, 1, 1]}, {"base": "r42"}, {"width_mult": 0},
])
def test_bad_configs_fail_with_the_field(bad):
    with pytest.raises(ConfigError, match="tnas space"):
        TnasSpace(**bad)


def test_validate_names_labels_and_candidates(test_space):
    s = test_space.largest()
    s.pop("stage3/depth")
    with pytest.raises(InvalidSampleError, match="stage3/depth"):
        test_space.validate(s)
    s = test_space.largest()
    s["stem/width_ratio"] = 0.55
    with pytest.raises(InvalidSampleError, match="0.55"):
        test_space.validate(s)


def test_residual_groups_share_one_width(test_space):
    s = test_space.largest()
    s.update({"stage2/width_ratio": 0.5, "stage2/block1/conv1/width_ratio": 0.3, "stage2/block2/conv1/width_ratio": 1.0})
    net = test_space.build(s)
    w = test_space.stage_widths[1]
    half, low = ratio_channels(0.5, w), ratio_channels(0.3, w)
    layer = net.layer2
    # the residual stream: every conv2 and the downsample conv have the stage width
    assert layer[0].conv2.out_channels == layer[1].conv2.out_channels == layer[0].downsample[0].out_channels == half
    assert layer[0].conv1.out_channels == low and layer[1].conv1.out_channels == w
    assert net.layer3[0].conv1.in_channels == half


def test_derived_networks_build_and_analytic_flops_match_the_counter(test_space):
    rng = np.random.default_rng(0)
    for _ in range(6):
        s = test_space.sample(rng)
        net = test_space.build(s).eval()
        out = net(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 16) and torch.isfinite(out).all()
        assert test_space.flops(s) == count_flops(net, (1, 3, 32, 32))
        assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [s[f"stage{i}/depth"] for i in range(1, 5)]


def test_flops_match_counter_on_a_half_r18_at_64():
    space = TnasSpace(base="r18", width_mult=0.5, input_size=64, embedding_size=128)
    rng = np.random.default_rng(1)
    for s in [space.largest(), space.smallest(), space.sample(rng)]:
        assert space.flops(s) == count_flops(space.build(s), (1, 3, 64, 64))


def test_expected_flops_is_the_exact_expectation():
    space = TnasSpace(layers=[1, 2, 1, 2], stem_width=4, stage_widths=[4, 6, 6, 8], width_ratios=[0.5, 1.0],
                      embedding_size=4, input_size=16)
    rng = np.random.default_rng(2)
    probs = {}
    for c in space.choices():
        p = rng.random(len(c.values)) + 0.1
        probs[c.label] = p / p.sum()
    brute = 0.0
    cs = space.choices()
    for combo in itertools.product(*[range(len(c.values)) for c in cs]):
        prob = np.prod([probs[c.label][i] for c, i in zip(cs, combo)])
        brute += prob * space.flops({c.label: c.values[i] for c, i in zip(cs, combo)})
    assert np.isclose(space.expected_flops(probs), brute, rtol=1e-10)
    # one-hot probabilities give the sample's FLOPs; torch inputs give a gradient
    s = space.sample(rng)
    onehot = {c.label: np.eye(len(c.values))[c.index(s[c.label])] for c in cs}
    assert np.isclose(space.expected_flops(onehot), space.flops(s))
    logits = {c.label: torch.zeros(len(c.values), requires_grad=True) for c in cs}
    e = space.expected_flops({k: torch.softmax(v, -1) for k, v in logits.items()})
    e.backward()
    assert logits["stage2/width_ratio"].grad[1] > 0 > logits["stage2/width_ratio"].grad[0]
    assert logits["stage4/depth"].grad[1] > 0


def test_largest_is_arcface_torch_iresnet_with_the_same_state_dict():
    space = TnasSpace(base="r18", width_mult=0.5, input_size=64, embedding_size=128)
    ours = space.build(space.largest())
    ref = get_model("r18", num_features=128, width_mult=0.5, input_size=64)
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    ours.load_state_dict(b)
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(ours.eval()(x), ref.eval()(x), atol=1e-5)
    # the uniformly narrowed student at ratio 0.5 is arcface_torch's r18 at a quarter width
    half = space.build(space.uniform(0.5))
    quarter = get_model("r18", num_features=128, width_mult=0.25, input_size=64)
    assert {k: v.shape for k, v in half.state_dict().items()} == {k: v.shape for k, v in quarter.state_dict().items()}


def test_descriptions_round_trip_through_get_model(test_space, tmp_path):
    s = test_space.sample(np.random.default_rng(3))
    desc = test_space.describe(s)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(desc))
    a = build_from_description(str(path))
    b = get_model(str(path), num_features=16)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert b.facenas_network["arch"]["space"] == "tnas"
    assert create_space("tnas", **desc["space_config"]).config() == test_space.config()


def test_latency_blocks_cover_the_network(test_space):
    everything = test_space.all_latency_blocks()
    keys = [b.key for b in everything]
    assert len(keys) == len(set(keys))
    rng = np.random.default_rng(4)
    for _ in range(5):
        s = test_space.sample(rng)
        blocks = test_space.latency_blocks(s)
        assert {b.key for b in blocks} <= set(keys)
        assert len(blocks) == 2 + sum(s[f"stage{i}/depth"] for i in range(1, 5))
        # chaining the blocks is the network's forward pass
        net = test_space.build(s).eval()
        x = torch.randn(1, 3, 32, 32)
        y = x
        for blk in blocks:
            assert tuple(y.shape[1:]) == blk.input_shape
            y = blk.build().eval()(y)
        assert y.shape == net(x).shape
