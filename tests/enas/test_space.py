"""The ENAS space: labels, shared-weight supernet == standalone networks, latency-table hooks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facenas.errors import ConfigError
from facenas.plugins.enas.arch import EnasSpaceConfig, decode
from facenas.plugins.enas.model import batch_stat_bn
from facenas.plugins.enas.ops import OPS, FactorizedReduction
from facenas.nas.flops import count_flops
from facenas.nas.space import InvalidSampleError, SPACES, build_from_description, create_space



@pytest.fixture(scope="module")
def space():
    return create_space("enas_test")


@pytest.fixture(scope="module")
def supernet(space):
    torch.manual_seed(0)
    net = space.supernet()
    # give BN layers non-trivial running statistics and affine parameters, so copying matters
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net


def _samples(space, n, seed=0):
    rng = np.random.default_rng(seed)
    out = [space.sample(rng) for _ in range(n)]
    # corner cases: every skip on / off, every node reading the cell input, a chain, each op everywhere
    for op in space.cfg.ops:
        s = {c.label: (op if c.label.endswith("/op") else c.values[-1]) for c in space.choices()}
        out.append(s)
    out.append({c.label: (c.values[0] if not c.label.endswith("/op") else OPS[0]) for c in space.choices()})
    return out


def test_registered_and_labels(space):
    assert {"enas", "enas_test"} <= set(SPACES.names())
    labels = space.labels()
    cfg = space.cfg
    assert "cell1/node1/input" not in labels  # node 1 always reads the cell input
    assert space.choice_map()["cell2/node3/input"].values == (0, 1, 2)
    assert space.choice_map()["cell1/node1/op"].values == OPS
    assert space.choice_map()["cell3/skip/cell1"].values == (0, 1)
    assert "cell2/skip/cell1" not in labels  # cell 1 is cell 2's direct input, not a skip
    n_skip = sum(len(cfg.skip_sources(c)) for c in range(1, cfg.num_cells + 1))
    assert len(labels) == cfg.num_cells * (2 * cfg.num_nodes - 1) + n_skip
    assert len(set(labels)) == len(labels)


def test_decode_loose_ends(space):
    s = {c.label: c.values[0] for c in space.choices()}
    s["cell1/node2/input"] = 1
    s["cell1/node3/input"] = 1
    arc = decode(space.cfg, space.validate(s))[0]
    assert arc.inputs == (0, 1, 1)
    assert arc.loose_ends() == [2, 3]


def test_supernet_holds_every_op_of_every_node_once(space, supernet):
    cfg = space.cfg
    for cell in supernet.cells:
        assert len(cell.nodes) == cfg.num_nodes
        for node in cell.nodes:
            assert tuple(node.ops.keys()) == cfg.ops
    n_skips = sum(len(cfg.skip_sources(c)) for c in range(1, cfg.num_cells + 1))
    assert len(supernet.skips) == n_skips
    assert len(supernet.reduce) == sum(r + 1 for r in cfg.reductions)
    assert all(isinstance(m, FactorizedReduction) for m in supernet.reduce.values())


@pytest.mark.parametrize("mode", ["eval", "batch_stats"])
def test_every_sampled_arc_runs_shared_and_standalone_equal(space, supernet, mode):
    x = torch.randn(6, 3, *space.input_size, generator=torch.Generator().manual_seed(1))
    sup_keys = set(supernet.state_dict())
    for sample in _samples(space, 25):
        sample = space.validate(sample)
        supernet.activate(sample)
        standalone = supernet.extract(sample)
        assert set(standalone.state_dict()) <= sup_keys
        fresh = space.build(sample)  # the standalone builder gives the same parameter names and shapes
        assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in standalone.state_dict().items()}
        with torch.no_grad():
            if mode == "eval":
                supernet.eval()
                standalone.eval()
                a, b = supernet(x), standalone(x)
            else:
                with batch_stat_bn(supernet), batch_stat_bn(standalone):
                    a, b = supernet(x), standalone(x)
        assert a.shape == (6, space.cfg.embedding_size)
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        # standalone networks hold only the arc's parameters
        assert sum(p.numel() for p in standalone.parameters()) < sum(p.numel() for p in supernet.parameters())


def test_batch_stat_bn_leaves_running_stats(space, supernet):
    sample = space.validate(_samples(space, 1, seed=3)[0])
    supernet.activate(sample)
    before = {k: v.clone() for k, v in supernet.state_dict().items() if "running" in k}
    with torch.no_grad(), batch_stat_bn(supernet):
        supernet(torch.randn(4, 3, *space.input_size))
    after = supernet.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_training_step_touches_only_the_active_arc(space):
    torch.manual_seed(0)
    net = space.supernet()
    sample = space.validate(_samples(space, 1, seed=5)[0])
    net.activate(sample)
    net.train()
    net(torch.randn(4, 3, *space.input_size)).pow(2).mean().backward()
    active = set(net.extract(sample).state_dict())
    for name, p in net.named_parameters():
        if name in active:
            assert p.grad is not None, name
        else:
            assert p.grad is None, f"{name} got a gradient but is not on the active arc"


def test_inactive_supernet_and_standalone_activate_fail(space, supernet):
    net = space.supernet()
    with pytest.raises(Exception, match="activate"):
        net(torch.randn(2, 3, *space.input_size))
    standalone = space.build(space.sample(np.random.default_rng(0)))
    with pytest.raises(Exception, match="supernet"):
        standalone.activate(space.sample(np.random.default_rng(1)))


def test_validate_errors(space):
    s = space.sample(np.random.default_rng(0))
    bad = dict(s)
    bad["cell2/node3/input"] = 3
    with pytest.raises(InvalidSampleError, match="cell2/node3/input"):
        space.validate(bad)
    bad = dict(s)
    bad["cell1/node2/opp"] = bad.pop("cell1/node2/op")
    with pytest.raises(InvalidSampleError, match="did you mean"):
        space.validate(bad)


def test_config_checks():
    with pytest.raises(ConfigError, match="reductions"):
        create_space("enas", reductions=[5])
    with pytest.raises(ConfigError, match="ops"):
        create_space("enas", ops=["conv_7x7"])
    with pytest.raises(ConfigError, match="num_nodes"):
        EnasSpaceConfig.from_dict({"num_nodes": 0})
    with pytest.raises(ConfigError, match="did you mean"):
        create_space("enas", num_cell=3)


def test_subset_of_ops_and_no_skips():
    sp = create_space("enas_test", ops=["sep_conv_3x3", "max_pool_3x3"], skip_connections=False)
    assert not any("/skip/" in label for label in sp.labels())
    s = sp.sample(np.random.default_rng(0))
    assert sp.build(s)(torch.randn(2, 3, 32, 32)).shape == (2, 16)


def test_description_round_trip(space):
    from facenas.adapters.insightface.backbones import get_model

    s = space.sample(np.random.default_rng(7))
    desc = space.describe(s)
    net = build_from_description(desc)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    net2 = get_model(desc, num_features=24)
    assert net2.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 24)


def test_geometry_of_the_cpu_and_paper_configs():
    cpu = create_space("enas")
    assert cpu.cfg.cell_shape(1) == (16, 32, 32)
    assert cpu.cfg.cell_shape(3) == (64, 8, 8) == cpu.cfg.position_shape(5)
    from facenas.plugins.enas.space import PAPER_CONFIG

    paper = create_space("enas", **PAPER_CONFIG)
    assert paper.cfg.position_shape(5) == (256, 14, 14)


def test_latency_blocks_cover_the_network_exactly(space):
    """Every conv / linear MAC of a standalone network is in exactly one of its latency blocks."""
    keys = {b.key for b in space.all_latency_blocks()}
    assert len(keys) == len(space.all_latency_blocks())
    for sample in _samples(space, 12, seed=11):
        blocks = space.latency_blocks(sample)
        assert {b.key for b in blocks} <= keys
        n_ops = sum(1 for b in blocks if b.key.split("|")[0].split(".")[1] in OPS)
        assert n_ops == space.cfg.num_cells * space.cfg.num_nodes
        total = 0
        for b in blocks:
            module = b.build()
            out = module.eval()(torch.randn(2, *b.input_shape))
            assert torch.isfinite(out).all()
            total += count_flops(module, (1, *b.input_shape))
        assert total == space.flops(sample)


def test_all_latency_blocks_is_the_union_over_samples(space):
    seen = set()
    for sample in _samples(space, 40, seed=2):
        seen |= {b.key for b in space.latency_blocks(sample)}
    assert seen == {b.key for b in space.all_latency_blocks()}
