"""The ``ofa`` space: samples, static build, supernet extraction, encodings, FLOPs, latency blocks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facenas.adapters.insightface.backbones import get_model, load_backbone, save_backbone
from facenas.errors import ConfigError
from facenas.nas.flops import count_flops
from facenas.plugins.ofa.calibrate import recalibrate_bn
from facenas.plugins.ofa.ops import ElasticDepthwiseConv2d
from facenas.plugins.ofa.space import OFASpace
from facenas.nas.space import SPACES, InvalidSampleError, build_from_description, create_space


def _perturb(supernet: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics/affines and kernel transforms, so extraction is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in supernet.named_parameters():
            if "kernel_transform" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
        for m in supernet.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


def test_registered_and_round_trips_its_config():
    assert {"ofa", "ofa_tiny"} <= set(SPACES.names())
    space = create_space("ofa_tiny")
    again = create_space(space.name, **space.config())
    assert again.config() == space.config()
    assert [c.label for c in again.choices()] == [c.label for c in space.choices()]
    labels = space.labels()
    assert labels[:3] == ["stage1/depth", "stage1/block1/kernel_size", "stage1/block1/expand_ratio"]
    assert len(labels) == 5 * (1 + 4 * 2)


@pytest.mark.parametrize("name,config", [("ofa_tiny", {}), ("ofa", {"input_size": 64, "embedding_size": 32}),
                                         ("ofa", {"input_size": 64, "embedding_size": 32, "head": "gdc"})])
def test_sample_build_forward(name, config):
    space = create_space(name, **config)
    rng = np.random.default_rng(1)
    for sample in (space.sample(rng), space.largest(), space.smallest()):
        net = space.build(sample).eval()
        with torch.no_grad():
            y = net(torch.randn(2, 3, *space.input_size))
        assert y.shape == (2, space.embedding_size)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("config", [{}, {"head": "gdc", "width_mult": 1.2}, {"stage_strides": [2, 2, 2, 1, 1]},
                                    {"stage_strides": [1, 2, 2, 2, 1], "head": "gdc"}])  # the face layout of bench_ofa
@pytest.mark.parametrize("train_mode", [False, True])
def test_extracted_subnet_equals_supernet(config, train_mode):
    """The issue's first must-show: extracted == supernet output under the same sample."""
    space = create_space("ofa_tiny", **config)
    supernet = space.supernet()
    _perturb(supernet)
    supernet.train(train_mode)
    rng = np.random.default_rng(7)
    x = torch.randn(4, 3, *space.input_size, generator=torch.Generator().manual_seed(0))
    for _ in range(6):
        sample = space.sample(rng)
        supernet.set_active(space.arch(sample))
        subnet = supernet.get_active_subnet()
        assert subnet.training == train_mode
        with torch.no_grad():
            expected = supernet(x)
            got = subnet(x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        # same structure and parameter names as a freshly built network of the sample
        fresh = space.build(sample)
        assert list(fresh.state_dict()) == list(subnet.state_dict())
        assert all(fresh.state_dict()[k].shape == v.shape for k, v in subnet.state_dict().items())


def test_extracted_subnet_reloads_through_its_description(tmp_path):
    space = create_space("ofa_tiny")
    supernet = space.supernet()
    _perturb(supernet)
    supernet.eval()
    sample = space.sample(np.random.default_rng(3))
    supernet.set_active(space.arch(sample))
    subnet = supernet.get_active_subnet().eval()
    desc = space.describe(sample)
    rebuilt = get_model(desc, num_features=space.embedding_size)
    save_backbone(subnet, tmp_path / "sub.pt", network=rebuilt.facenas_network, embedding_size=space.embedding_size)
    loaded = load_backbone(tmp_path / "sub.pt").eval()
    x = torch.randn(2, 3, *space.input_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), subnet(x))
    assert isinstance(build_from_description(desc), torch.nn.Module)


def test_kernel_transform_starts_as_centre_crop_and_is_learnable():
    conv = ElasticDepthwiseConv2d(4, (3, 5, 7))
    w7 = conv.weight
    torch.testing.assert_close(conv.active_weight(4, 5), w7[:, :, 1:6, 1:6])
    torch.testing.assert_close(conv.active_weight(2, 3), w7[:2, :, 2:5, 2:5])
    assert {n for n, _ in conv.named_parameters()} == {"weight", "kernel_transform_7to5", "kernel_transform_5to3"}
    x = torch.randn(1, 4, 8, 8)
    conv(x, 3).sum().backward()
    assert conv.kernel_transform_5to3.grad is not None and conv.kernel_transform_7to5.grad is not None
    assert conv.kernel_transform_5to3.grad.abs().sum() > 0


def test_channel_sorting_keeps_the_function():
    space = create_space("ofa_tiny")
    supernet = space.supernet()
    _perturb(supernet)
    supernet.eval()
    x = torch.randn(2, 3, *space.input_size)
    with torch.no_grad():
        before = supernet(x)
        supernet.sort_channels_by_importance()
        after = supernet(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    block = supernet.stages[0][0]
    importance = block.project.conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])


@pytest.mark.parametrize("config", [{}, {"head": "gdc"}, {"width_mult": 1.2, "input_size": 48},
                                    {"stage_strides": [1, 2, 2, 2, 1], "head": "gdc"}])
def test_analytic_flops_equal_counted(config):
    space = create_space("ofa_tiny", **config)
    rng = np.random.default_rng(2)
    for sample in (space.sample(rng), space.sample(rng), space.largest(), space.smallest()):
        assert space.flops(sample) == count_flops(space.build(sample), (1, 3, *space.input_size))


def test_encoding_zeroes_inactive_blocks_and_canonical_forms():
    space = create_space("ofa_tiny")
    rng = np.random.default_rng(5)
    sample = space.sample(rng)
    sample["stage2/depth"] = 2
    enc = space.encode(sample)
    assert enc.shape == (5 * 4 * 6,) and set(np.unique(enc)) <= {0.0, 1.0}
    per_block = enc.reshape(5, 4, 6)
    assert per_block[1, 2:].sum() == 0 and np.all(per_block[1, :2].sum(-1) == 2)
    other = dict(sample)
    other["stage2/block4/kernel_size"] = 3 if sample["stage2/block4/kernel_size"] != 3 else 5
    assert np.array_equal(space.encode(other), enc)
    assert space.canonical(other) == space.canonical(sample)
    genomes = space.random_genomes(rng, 16)
    enc_batch = space.encode_genomes(genomes)
    for g, e in zip(genomes, enc_batch):
        s = space.sample_from_genome(g)
        assert np.array_equal(space.genome(s), g)
        assert np.array_equal(space.encode(s), e)
    canon = space.canonical_genomes(genomes)
    assert np.array_equal(space.encode_genomes(canon), enc_batch)


def test_latency_blocks_cover_every_sample_and_build():
    space = create_space("ofa_tiny")
    all_blocks = {b.key: b for b in space.all_latency_blocks()}
    assert len(all_blocks) == 3 + 5 * 2 * 3 * 3
    rng = np.random.default_rng(0)
    for sample in (space.sample(rng), space.largest(), space.smallest()):
        blocks = space.latency_blocks(sample)
        assert len(blocks) == 3 + sum(c.depth for c in space.arch(sample))
        assert {b.key for b in blocks} <= set(all_blocks)
    for key, block in all_blocks.items():
        module = block.build().eval()
        with torch.no_grad():
            out = module(torch.randn(1, *block.input_shape))
        if "|out=" in key and key.startswith(("mbconv", "conv")):
            c, h, w = (int(v) for v in key.split("|out=")[1].split("|")[0].split("x"))
            assert tuple(out.shape[1:]) == (c, h, w), key
    key = next(k for k in all_blocks if k.startswith("mbconv") and "|s=2|" in k)
    assert "|k=" in key and "|e=" in key and "|se=" in key and "|act=" in key


def test_bad_configs_and_samples_fail_clearly():
    with pytest.raises(ConfigError, match="head"):
        OFASpace(head="fc")
    with pytest.raises(ConfigError, match="kernel_sizes"):
        OFASpace(kernel_sizes=[3, 4])
    with pytest.raises(ConfigError, match="base_channels"):
        OFASpace(base_channels=[16, 16])
    space = create_space("ofa_tiny")
    bad = space.largest()
    bad["stage1/depth"] = 5
    with pytest.raises(InvalidSampleError, match="stage1/depth"):
        space.build(bad)


def test_bn_recalibration_sets_statistics_of_the_data():
    space = create_space("ofa_tiny")
    net = space.build(space.largest()).eval()
    images = torch.randn(64, 3, *space.input_size) * 2 + 1
    recalibrate_bn(net, images, batch_size=16)
    assert not net.training
    stem_bn = net.first_conv.bn
    with torch.no_grad():
        feats = net.first_conv.conv(images)
    torch.testing.assert_close(stem_bn.running_mean, feats.mean((0, 2, 3)), rtol=1e-3, atol=1e-4)
    assert stem_bn.momentum == 0.1


RELU_NO_SE = {"stage_activations": ["relu"] * 5, "stem_activation": "relu", "head_activation": "relu",
              "stage_se": [False] * 5}


def test_block_options_default_to_ofa_and_appear_in_the_config_only_when_changed():
    """stage_activations / stage_se / stem_activation / head_activation: a default space's config, latency keys
    and network are as before the options existed (recorded architectures and shipped tables still match)."""
    default = create_space("ofa", input_size=64, embedding_size=32, head="gdc")
    assert not {"stage_activations", "stage_se", "stem_activation", "head_activation"} & set(default.config())
    relu = create_space("ofa", input_size=64, embedding_size=32, head="gdc", **RELU_NO_SE)
    assert {k: relu.config()[k] for k in RELU_NO_SE} == RELU_NO_SE
    assert create_space("ofa", **relu.config()).config() == relu.config()
    sample = default.largest()
    kinds = lambda net: {type(m).__name__ for m in net.modules()}  # noqa: E731
    assert {"Hardswish", "SqueezeExcite"} <= kinds(default.build(sample))
    assert not {"Hardswish", "SqueezeExcite"} & kinds(relu.build(sample))
    # same samples, same latency-table layout; the keys say what changed
    assert [c.label for c in relu.choices()] == [c.label for c in default.choices()]
    keys = [b.key for b in default.fixed_latency_blocks()]
    assert keys[0].endswith("|act=hswish") and "|act=" not in keys[2]
    relu_keys = [b.key for b in relu.fixed_latency_blocks()]
    assert relu_keys[0].endswith("|act=relu") and relu_keys[2].endswith("|act=relu")
    assert all("|se=0|act=relu" in b.key for b in relu.latency_blocks(sample)[1:-1])
    assert count_flops(relu.build(sample), (1, 3, 64, 64)) < count_flops(default.build(sample), (1, 3, 64, 64))


@pytest.mark.parametrize("options", [RELU_NO_SE, {"stage_se": [True] * 5}])
def test_extracted_subnet_equals_supernet_with_changed_block_options(options):
    space = create_space("ofa_tiny", **options)
    supernet = space.supernet()
    _perturb(supernet)
    supernet.eval()
    x = torch.randn(2, 3, *space.input_size, generator=torch.Generator().manual_seed(0))
    for sample in (space.largest(), space.sample(np.random.default_rng(2))):
        supernet.set_active(space.arch(sample))
        with torch.no_grad():
            torch.testing.assert_close(supernet.get_active_subnet()(x), supernet(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options,message", [
    ({"stage_activations": ["prelu"] * 5}, "stage_activations=['prelu', 'prelu', 'prelu', 'prelu', 'prelu'] needs 5 of"),
    ({"stage_activations": "relu"}, "stage_activations='relu' needs 5 of"),
    ({"stage_se": [1, 0, 0, 0, 0]}, "stage_se=[1, 0, 0, 0, 0] needs 5 booleans"),
    ({"head_activation": "gelu"}, "head_activation='gelu' is not one of ['relu', 'hswish']"),
    ({"se": True}, "space 'ofa' has no option 'se'"),
])
def test_bad_block_options_name_the_field(options, message):
    with pytest.raises(ConfigError) as err:
        create_space("ofa", **options)
    assert message in str(err.value)


def test_a_description_rebuilds_with_changed_space_options_and_reloads(tmp_path):
    """network_kwargs space_config: the same architecture with SE off and ReLU (an ablation of a pick); the
    checkpoint records the changed description, so it reloads (and exports) as trained."""
    space = create_space("ofa", input_size=64, embedding_size=32, head="gdc")
    desc = space.describe(space.largest())
    net = get_model(desc, num_features=32, space_config=RELU_NO_SE).eval()
    assert not {"Hardswish", "SqueezeExcite"} & {type(m).__name__ for m in net.modules()}
    assert net.facenas_network["arch"]["space_config"]["stage_se"] == [False] * 5
    assert desc["space_config"] == space.config()  # the caller's description is not changed
    save_backbone(net, tmp_path / "n.pt", network=net.facenas_network, embedding_size=32)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(load_backbone(tmp_path / "n.pt").eval()(x), net(x))
    for bad, message in (({"input_size": 32}, "input_size and embedding_size have their own keys"),
                         ([1], "must be a dict of the space's options"),
                         ({"stage_se": [False]}, "stage_se=[False] needs 5 booleans")):
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            get_model(desc, space_config=bad)
