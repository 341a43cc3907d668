"""Teachers (facenas checkpoint, arcface_torch state dict, ONNX, random), cached features, the distillation loss."""
from __future__ import annotations

import math

import pytest
import torch

from facenas.adapters.insightface.backbones import get_model, save_backbone
from facenas.errors import ConfigError, DataFormatError
from facenas.plugins.tnas.teacher import DistillationLoss, TeacherFeatures, load_teacher

from .conftest import random_teacher


def _r18(seed: int = 0):
    torch.manual_seed(seed)
    return get_model("r18", num_features=16, width_mult=0.25, input_size=32).eval()


def test_teacher_from_a_facenas_checkpoint(tmp_path):
    ref = _r18()
    save_backbone(ref, tmp_path / "best.pt")
    x = torch.randn(2, 3, 32, 32)
    for teacher in (load_teacher(str(tmp_path / "best.pt")), load_teacher({"path": str(tmp_path / "best.pt")})):
        assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
        assert torch.allclose(teacher(x), ref(x), atol=1e-6)
    with pytest.raises(DataFormatError, match="not found"):
        load_teacher(str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="path"):
        load_teacher({"network": "r18"})


def test_teacher_from_bare_state_dict_needs_its_network(tmp_path):
    ref = get_model("r18", num_features=16, width_mult=0.25, input_size=32).eval()
    torch.save(ref.state_dict(), tmp_path / "model.pt")
    with pytest.raises(ConfigError, match="network"):
        load_teacher(str(tmp_path / "model.pt"))
    # a bare state dict rebuilds with the factory's defaults plus the inferred embedding size, so a
    # narrowed / small-input network needs its kwargs: arcface_torch's own r18 at 112 loads by name
    full = get_model("r18", num_features=32).eval()
    torch.save(full.state_dict(), tmp_path / "r18.pt")
    t = load_teacher({"path": str(tmp_path / "r18.pt"), "network": "r18"})
    x = torch.randn(1, 3, 112, 112)
    assert torch.allclose(t(x), full(x), atol=1e-5)


def test_onnx_teacher_runs_through_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    from facenas.adapters.runtime.onnx_export import export_onnx

    ref = _r18(1)
    export_onnx(ref, tmp_path / "teacher.onnx", input_size=(32, 32), check=False)
    teacher = load_teacher(str(tmp_path / "teacher.onnx"))
    feats = TeacherFeatures(teacher)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    out = feats(x)
    assert not out.requires_grad
    assert torch.allclose(out, ref(x), atol=1e-4)


def test_random_teacher_has_unit_scale_features_and_is_seeded():
    a = load_teacher(random_teacher())
    b = load_teacher(random_teacher())
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    fa = a(x)
    assert torch.equal(fa, b(x))
    assert 0.1 < float(fa.std()) < 10.0  # BN calibrated: no exploding activations


def test_teacher_features_are_computed_once_per_key_and_resized():
    calls = []

    class Probe(torch.nn.Module):
        input_size = (16, 16)

        def forward(self, x):
            calls.append(tuple(x.shape))
            return x.mean(dim=(2, 3)) * 2

    feats = TeacherFeatures(Probe(), num_items=10, cache=True, identity="probe")
    x = torch.randn(4, 3, 32, 32)
    idx, flp = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 1, 1])
    first = feats(x, idx, flp)
    assert calls == [(4, 3, 16, 16)]  # resized to the teacher's input size
    again = feats(x, idx, flp)
    assert torch.equal(first, again) and len(calls) == 1 and feats.hits == 4
    # a batch with one new key runs the teacher on that image only
    feats(x, torch.tensor([0, 1, 2, 5]), flp)
    assert calls[-1] == (1, 3, 16, 16) and feats.computed == 5


def test_teacher_cache_saves_and_loads_only_for_the_same_identity(tmp_path):
    teacher = load_teacher(random_teacher())
    x = torch.rand(4, 3, 32, 32)
    idx, flp = torch.arange(4), torch.zeros(4, dtype=torch.long)
    feats = TeacherFeatures(teacher, 6, True, "A")
    want = feats(x, idx, flp)
    feats.save(tmp_path / "cache.pt")
    same = TeacherFeatures(teacher, 6, True, "A")
    assert same.load(tmp_path / "cache.pt")
    assert torch.equal(same(x, idx, flp), want) and same.computed == 0
    other = TeacherFeatures(teacher, 6, True, "B")
    assert not other.load(tmp_path / "cache.pt")


def test_distillation_loss_by_hand_and_projection():
    s = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 4.0], [0.0, 1.0]])
    assert math.isclose(float(DistillationLoss(2, 2, kind="l2")(s, t)), (5.0 + 1.0) / 2, rel_tol=1e-6)
    assert math.isclose(float(DistillationLoss(2, 2, kind="mse")(s, t)), (9 + 16 + 0 + 1) / 4, rel_tol=1e-6)
    assert DistillationLoss(2, 2).projection is None
    proj = DistillationLoss(2, 3)
    assert isinstance(proj.projection, torch.nn.Linear) and proj.projection.weight.shape == (3, 2)
    with torch.no_grad():
        proj.projection.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    assert math.isclose(float(proj(s, torch.zeros(2, 3)).detach()), 1.5, rel_tol=1e-6)
    with pytest.raises(ConfigError, match="projection"):
        DistillationLoss(2, 3, projection="none")
    with pytest.raises(ConfigError):
        DistillationLoss(2, 2, kind="cosine")
