"""The bridge to a user's arcface_torch checkout (skipped unless FACENAS_ARCFACE_TORCH points at one).

Development check: ``FACENAS_ARCFACE_TORCH=/path/to/insightface/recognition/arcface_torch pytest
tests/insightface/test_arcface_torch_bridge.py``. The checkout is never copied into the repo.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from facenas.adapters.insightface.arcface_torch_bridge import ENV_VAR, ArcfaceTorchBridge, bridge_from_config
from facenas.adapters.insightface.backbones import get_model
from facenas.adapters.insightface.losses import CombinedMarginLoss
from facenas.errors import ConfigError

CHECKOUT = os.environ.get(ENV_VAR)
needs_checkout = pytest.mark.skipif(not CHECKOUT or not Path(CHECKOUT, "losses.py").is_file(),
                                    reason=f"set {ENV_VAR} to an arcface_torch checkout to run the bridge checks")


def test_bridge_rejects_a_folder_that_is_not_arcface_torch(tmp_path):
    with pytest.raises(ConfigError, match="lacks"):
        ArcfaceTorchBridge(tmp_path)


def test_no_bridge_unless_configured(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)

    class Cfg:
        arcface_torch = None
        arcface_torch_components = ["losses"]

    assert bridge_from_config(Cfg()) is None


@needs_checkout
def test_checkout_backbones_load_facenas_weights_and_agree():
    bridge = ArcfaceTorchBridge(CHECKOUT)
    theirs = bridge.get_model("mbf", dropout=0.0, fp16=False, num_features=128).eval()
    ours = get_model("mbf", num_features=128).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 112, 112)
    assert torch.allclose(theirs(x), ours(x), atol=1e-5)
    assert theirs.facenas_network == {"name": "mbf", "kwargs": {"dropout": 0.0, "num_features": 128}}
    assert type(theirs).__module__.startswith("_facenas_arcface_torch")


@needs_checkout
@pytest.mark.parametrize("margins", [(1.0, 0.5, 0.0), (1.0, 0.0, 0.4), (1.0, 0.0, 0.0)])
def test_checkout_margin_loss_matches_ours(margins):
    bridge = ArcfaceTorchBridge(CHECKOUT)
    cos = torch.rand(6, 9) * 2 - 1
    labels = torch.tensor([0, 3, -1, 8, 2, 5])
    theirs = bridge.margin_loss(64.0, margins)(cos.clone(), labels.view(-1, 1).clone())
    ours = CombinedMarginLoss(64.0, *margins)(cos, labels)
    assert torch.allclose(theirs, ours, atol=1e-4)


@needs_checkout
def test_checkout_partial_fc_needs_cuda_on_this_machine():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: PartialFC_V2 is usable")
    bridge = ArcfaceTorchBridge(CHECKOUT)
    with pytest.raises(ConfigError, match="only on CUDA"):
        bridge.partial_fc(bridge.margin_loss(64.0, (1.0, 0.5, 0.0)), 16, 10, 1.0, False)


@needs_checkout
def test_checkout_verification_roc_runs_without_mxnet():
    bridge = ArcfaceTorchBridge(CHECKOUT)
    verification = bridge.verification_module()
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(400, 8))
    issame = np.arange(200) % 2 == 0
    emb[1::2][issame] = emb[0::2][issame] + 0.05 * rng.normal(size=(100, 8))  # same pairs are close
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    _, _, accuracy = verification.calculate_roc(np.arange(0, 4, 0.01), emb[0::2], emb[1::2], issame, nrof_folds=10)
    assert np.mean(accuracy) > 0.95


@needs_checkout
def test_train_with_checkout_backbone_and_loss(tmp_path):
    from facenas.plugins.engine import train

    from ..engine.conftest import tiny_config, tiny_loader

    cfg = tiny_config(tmp_path, num_epoch=1, network="mbf", network_kwargs={}, embedding_size=16,
                      arcface_torch=CHECKOUT, arcface_torch_components=["backbones", "losses"])
    result = train(cfg, train_loader=tiny_loader(size=112, num_classes=6, per_class=4, batch_size=8))
    assert type(result.model).__module__.startswith("_facenas_arcface_torch")
    # its checkpoint loads into facenas's own mbf (same parameter names)
    from facenas.adapters.insightface.backbones import load_backbone

    assert load_backbone(tmp_path / "run" / "last.pt").features.layers[2].out_features == 16
