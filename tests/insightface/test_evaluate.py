"""VerificationEvaluator: input size from the model, callables, and agreement with the arcface_torch bridge."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from facenas.adapters.insightface.evaluate import VerificationEvaluator


class SizedPixels(torch.nn.Module):
    """A parameter-free embedder that insists on its declared input size."""

    def __init__(self, size: int):
        super().__init__()
        self.input_size = (size, size)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        assert tuple(x.shape[-2:]) == self.input_size, x.shape
        return torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1) * self.scale


def test_pairs_are_resized_to_the_models_input_size(synthetic_data):
    ev = VerificationEvaluator({"val": synthetic_data / "val.bin"}, batch_size=50)
    small = ev(SizedPixels(40))
    assert 0.5 < small["val_acc"] <= 1.0
    assert VerificationEvaluator({"val": synthetic_data / "val.bin"}, image_size=40)(SizedPixels(40)) == small
    with pytest.raises(AssertionError):  # an explicit image_size wins over the model's
        VerificationEvaluator({"val": synthetic_data / "val.bin"}, image_size=48)(SizedPixels(40))


CHECKOUT = os.environ.get("FACENAS_ARCFACE_TORCH")


@pytest.mark.skipif(not CHECKOUT or not Path(CHECKOUT, "eval", "verification.py").is_file(),
                    reason="set FACENAS_ARCFACE_TORCH to an arcface_torch checkout to compare with its calculate_roc")
def test_bridge_evaluator_agrees_with_ours(synthetic_data):
    from facenas.adapters.insightface.arcface_torch_bridge import ArcfaceTorchBridge

    class Cfg:
        val_batch_size = 50

        @staticmethod
        def input_size():
            return 40

    bins = {"val": str(synthetic_data / "val.bin")}
    theirs = ArcfaceTorchBridge(CHECKOUT, ("verification",)).evaluator(bins, Cfg())(SizedPixels(40))
    ours = VerificationEvaluator(bins, batch_size=50)(SizedPixels(40))
    assert theirs["val_acc"] == ours["val_acc"] and theirs["val_acc_std"] == ours["val_acc_std"]
