"""Reference backbones: arcface_torch names/shapes (strict loading), registry forward passes, AirFace
structure, architecture descriptions and checkpoint files (facenas, arcface_torch, ONNX)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from facenas.adapters.insightface.backbones import (
    BACKBONES,
    CheckpointMismatchError,
    get_model,
    load_backbone,
    save_backbone,
)
from facenas.adapters.insightface.backbones.airface import AirFaceNet, Bottleneck, OnePlusTanh
from facenas.errors import ConfigError
from facenas.nas.flops import count_flops
from facenas.nas.space import create_space

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "arcface_torch"


def _reference(name: str) -> dict:
    return json.loads((REFERENCE / f"{name}.json").read_text())


def _state_dict_from_reference(ref: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with arcface_torch's names and shapes (as a released model.pt has)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in ref["state_dict"].items():
        out[key] = (torch.tensor(7) if key.endswith("num_batches_tracked")
                    else torch.rand(shape, generator=g) + (0.5 if key.endswith("running_var") else 0.0))
    return out


@pytest.mark.parametrize("name", ["r50", "mbf"])
def test_arcface_torch_state_dict_loads_strict(name):
    ref = _reference(name)
    model = get_model(name, dropout=0.0, fp16=False, num_features=512)
    state = _state_dict_from_reference(ref)
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.state_dict()[next(iter(state))], next(iter(state.values())))
    assert [k for k, p in model.named_parameters() if not p.requires_grad] == ref["frozen"]
    assert sum(p.numel() for p in model.parameters()) == ref["num_params"]


@pytest.mark.parametrize("name", ["r18", "r34", "r100", "mbf_large"])
def test_other_reference_names_and_shapes(name):
    ref = _reference(name)
    model = get_model(name)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == ref["state_dict"]


SMALL = {
    "r18": {"width_mult": 0.125, "input_size": 32}, "r34": {"width_mult": 0.125, "input_size": 32},
    "r50": {"width_mult": 0.125, "input_size": 32}, "r100": {"width_mult": 0.125, "input_size": 32},
    "r200": {"width_mult": 0.125, "input_size": 32}, "mbf": {"width_mult": 0.25, "input_size": 48},
    "mbf_large": {"width_mult": 0.125, "input_size": 48},
    "airface": {"width_mult": 0.25, "depth_mult": 0.2, "input_size": 48},
}


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_registered_backbone_builds_and_runs(name):
    kwargs = SMALL[name]
    model = get_model(name, num_features=24, **kwargs)
    size = kwargs["input_size"]
    out = model(torch.randn(3, 3, size, size))
    assert out.shape == (3, 24) and torch.isfinite(out).all()
    out.sum().backward()
    assert model.facenas_network == {"name": name, "kwargs": {"num_features": 24, **kwargs}}


def test_input_size_sizes_the_head():
    assert get_model("mbf", input_size=64).features.layers[0].layers[0].kernel_size == (4, 4)
    assert get_model("r18", width_mult=0.25, input_size=64).fc.in_features == 128 * 4 * 4
    with pytest.raises(ConfigError, match="does not take"):
        get_model("mbf", widht_mult=0.5)
    with pytest.raises(ConfigError, match="no dropout"):
        get_model("mbf", dropout=0.4)


def test_airface_follows_table_1():
    net = AirFaceNet(num_features=512)
    blocks = [m for m in net.blocks if isinstance(m, Bottleneck)]
    assert len(blocks) == 1 + 9 + 1 + 16 + 1 + 6
    strides = [b.depthwise[0].stride[0] for b in blocks]
    assert [i for i, s in enumerate(strides) if s == 2] == [0, 10, 27]
    widths = [b.project[0].out_channels for b in blocks]
    assert widths[:10] == [64] * 10 and widths[10:27] == [128] * 17 and widths[27:] == [256] * 7
    expansions = [b.expand[0].out_channels // b.expand[0].in_channels for b in blocks]
    assert expansions[0] == 2 and expansions[10] == 4 and expansions[27] == 8 and set(expansions[28:]) == {2}
    assert all(hasattr(b, "cbam") for b in blocks)
    assert net.conv_head[0].out_channels == 1024 and net.gdc[0].kernel_size == (7, 7)
    assert net.embedding.out_channels == 512
    # "1G" FLOPs in the paper's Table 4 = 2 x multiply-accumulates
    assert 0.45e9 < count_flops(net, (1, 3, 112, 112)) < 0.6e9
    gate = OnePlusTanh()(torch.tensor([-20.0, 0.0, 20.0]))
    assert gate.tolist() == pytest.approx([0.0, 1.0, 2.0])


def test_get_model_builds_an_architecture_description(tmp_path):
    space = create_space("toy", embedding_size=16, input_size=32)
    desc = space.describe(space.largest())
    model = get_model(desc)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(desc))
    wider = get_model(str(path), num_features=24, fp16=False, dropout=0.0)  # arcface_torch's call
    assert wider(torch.randn(2, 3, 32, 32)).shape == (2, 24)
    assert wider.facenas_network["arch"]["space_config"]["embedding_size"] == 24


def test_facenas_checkpoint_round_trip(tmp_path):
    model = get_model("mbf", num_features=32, width_mult=0.25, input_size=48).eval()
    path = save_backbone(model, tmp_path / "m.pt", meta={"note": "x"})
    record = torch.load(path, weights_only=True)
    assert record["format"] == "facenas.model/1" and record["embedding_size"] == 32
    assert record["input_size"] == [48, 48] and record["network"]["name"] == "mbf"
    loaded = load_backbone(path)
    x = torch.randn(2, 3, 48, 48)
    assert torch.equal(loaded(x), model(x)) and not loaded.training


def test_arcface_torch_model_pt_needs_network_and_loads(tmp_path):
    ref_model = get_model("mbf", num_features=128)
    path = tmp_path / "model.pt"
    torch.save({f"module.{k}": v for k, v in ref_model.state_dict().items()}, path)  # a DDP-saved file
    with pytest.raises(ConfigError, match="--network"):
        load_backbone(path)
    loaded = load_backbone(path, network="mbf")  # num_features inferred: 128
    assert loaded.features.layers[2].out_features == 128
    with pytest.raises(CheckpointMismatchError) as info:
        load_backbone(path, network="r18")
    message = str(info.value)
    assert "missing key(s)" in message and "unexpected key(s)" in message and "layer1.0.bn1.weight" in message


def test_checkpoint_from_another_architecture_lists_shape_mismatches(tmp_path):
    small = get_model("mbf", num_features=32, width_mult=0.25, input_size=48)
    path = tmp_path / "model.pt"
    torch.save(small.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch.*layers\.0\.layers\.0\.weight checkpoint \[32, 3, 3, 3\] vs model \[128"):
        load_backbone(path, network="mbf", num_features=32, input_size=48)


def test_onnx_teacher_wraps_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = get_model("mbf", num_features=32, width_mult=0.25, input_size=48).eval()
    path = tmp_path / "teacher.onnx"
    x = torch.randn(3, 3, 48, 48)
    torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["embedding"],
                      dynamic_axes={"input": {0: "batch"}}, dynamo=False)
    teacher = load_backbone(path)
    out = teacher(x)
    assert out.shape == (3, 32) and not out.requires_grad
    assert torch.allclose(out, model(x).detach(), atol=1e-4)
    assert list(teacher.parameters()) == []


def test_airface_spatial_gate_is_normalised_and_does_not_saturate():
    """CBAM's spatial gate normalises its logits (conv + BN): feature maps of any scale give gates spread
    around 1, not a 1+tanh saturated at 0 that zeroes the block for every input."""
    from facenas.adapters.insightface.backbones.airface import SpatialAttention

    torch.manual_seed(0)
    att = SpatialAttention().train()
    x = 100.0 * torch.randn(8, 16, 8, 8) - 300.0
    gate = att.gate(att.bn(att.conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1))))
    assert 0.5 < float(gate.mean()) < 1.5
    assert float((gate < 0.01).float().mean()) < 0.05
    out = att(x)
    assert float(out.std()) > 0.1 * float(x.std())


def _tnas_description(input_size: int = 32) -> dict:
    space = create_space("tnas", base="r18", width_mult=0.25, input_size=input_size, embedding_size=32)
    return space.describe(space.smallest())


def test_searched_network_builds_at_another_input_size(tmp_path):
    """Issue 19: a TNAS network searched at 32 px failed at train_v2's 112 (mat1 and mat2 shapes)."""
    desc = _tnas_description(32)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(desc))
    small = get_model(str(path), dropout=0.0, fp16=False, num_features=32)
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        small.eval()(torch.randn(1, 3, 112, 112))
    big = get_model(str(path), dropout=0.0, fp16=False, num_features=32, input_size=112)  # train_v2's call + size
    assert big(torch.randn(2, 3, 112, 112)).shape == (2, 32)
    assert big.facenas_network["arch"]["space_config"]["input_size"] == [112, 112]
    assert big.facenas_network["arch"]["sample"] == desc["sample"]  # the searched choices are kept
    shapes = {k: tuple(v.shape) for k, v in small.state_dict().items()}
    changed = {k for k, v in big.state_dict().items() if tuple(v.shape) != shapes[k]}
    assert changed == {"fc.weight"} and set(shapes) == set(big.state_dict())  # only the head follows the size
    ofa = create_space("ofa_tiny", head="gdc")
    gdc = get_model(ofa.describe(ofa.smallest()), input_size=112)
    assert gdc.eval()(torch.randn(1, 3, 112, 112)).shape == (1, 16)
    with pytest.raises(ConfigError, match="input_size"):
        get_model(desc, input_size=8)  # below what the space allows: named, not a shape error later
    with pytest.raises(ConfigError, match="no input_size"):
        get_model({**desc, "space": "toy", "space_config": {"embedding_size": 8}, "sample": {}}, input_size=112)


@pytest.mark.parametrize("space,config", [("tnas", {"base": "r18", "width_mult": 0.25, "input_size": 32}),
                                          ("ofa_tiny", {}), ("enas_test", {}), ("toy", {"input_size": 32})])
def test_fp16_body_under_autocast_head_in_float32(space, config):
    """fp16=True is honoured as arcface_torch's backbones: autocast body, float32 final layers and output."""
    sp = create_space(space, **config)
    desc = sp.describe(sp.smallest())
    ref = get_model(desc).eval()
    model = get_model(desc, fp16=True).eval()
    model.load_state_dict(ref.state_dict())  # same keys: a float checkpoint loads into the fp16 network
    assert model.fp16 is True
    size = sp.input_size if hasattr(sp, "input_size") else (32, 32)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))  # CPU tensors: no autocast, as arcface_torch
    if space == "tnas":  # an IResNet: its own forward autocasts the body on CUDA and runs fc on x.float()
        return
    # the wrapped networks: inside an autocast region the body computes in low precision, the head in float32
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    seen: dict[str, torch.dtype] = {}
    hooks = [layers[0].register_forward_hook(lambda m, i, o: seen.update(stem=o.dtype) and None),
             layers[-1].register_forward_hook(lambda m, i, o: seen.update(last=o.dtype) and None)]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    for h in hooks:
        h.remove()
    assert seen == {"stem": torch.bfloat16, "last": torch.float32} and out.dtype == torch.float32
