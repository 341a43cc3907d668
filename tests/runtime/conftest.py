"""Small networks with realistic activations for export tests (random BN statistics, not the init's)."""
from __future__ import annotations

import numpy as np
import pytest
import torch


def realistic(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Randomise BatchNorm statistics and affine terms so activations are O(1), like a trained net's."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            mod.running_mean.normal_(0.0, 0.1, generator=g)
            mod.running_var.uniform_(0.5, 2.0, generator=g)
            if mod.affine:
                mod.weight.data.uniform_(0.5, 1.5, generator=g)
                mod.bias.data.normal_(0.0, 0.1, generator=g)
    return model.eval()


def toy_description(input_size: int = 112, width: int = 16, op: str = "dwconv") -> dict:
    from facenas.nas.space import create_space

    space = create_space("toy", embedding_size=32, input_size=input_size)
    return space.describe({"stem/width": width, "block/kernel_size": 3, "block/depth": 2, "block/op": op})


@pytest.fixture()
def small_net():
    """A toy-space network at 112x112 (the input insightface.model_zoo routes to ArcFaceONNX)."""
    from facenas.adapters.insightface.backbones import get_model

    torch.manual_seed(0)
    return realistic(get_model(toy_description(112)))


@pytest.fixture(scope="session")
def faces() -> np.ndarray:
    """Real aligned faces when $FACENAS_SHARED_DATA is there, else random images (parity still holds)."""
    from facenas.adapters.runtime.faces import default_faces

    found, _ = default_faces(8)
    if found is not None:
        return found
    return np.random.default_rng(0).integers(0, 256, size=(8, 112, 112, 3), dtype=np.uint8)
