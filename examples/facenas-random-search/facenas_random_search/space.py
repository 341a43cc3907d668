"""The ``random_search_tiny`` space: a small CNN face backbone with four decisions (16 samples).

Networks map ``(B, 3, H, W)`` images normalised as InsightFace does to ``(B, embedding_size)``
embeddings: a stride-2 stem, ``stage1/depth`` inverted-residual blocks (expand 1x1 -> depthwise
``kernel_size`` -> project 1x1, with a residual), a stride-2 reduction, global pooling and a linear
embedding with batch norm (as MobileFaceNet's head ends).
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from facenas.nas.space import SPACES, Choice, SearchSpace, Value


class TinyCnnSpace(SearchSpace):
    """Stem width, kernel size, depth and expansion of a tiny face CNN.

    Args:
        embedding_size: length of the output embedding.
        input_size: input resolution (square).
    """

    name = "random_search_tiny"

    def __init__(self, embedding_size: int = 16, input_size: int = 32):
        self.embedding_size = int(embedding_size)
        self.input_size = (int(input_size), int(input_size))

    def choices(self) -> list[Choice]:
        return [
            Choice("stem/width", (8, 16)),
            Choice("stage1/kernel_size", (3, 5)),
            Choice("stage1/depth", (1, 2)),
            Choice("stage1/expand_ratio", (1, 2)),
        ]

    def config(self) -> dict[str, Any]:
        return {"embedding_size": self.embedding_size, "input_size": self.input_size[0]}

    def build(self, sample: Mapping[str, Value]) -> nn.Module:
        s = self.validate(sample)
        width, k = int(s["stem/width"]), int(s["stage1/kernel_size"])
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width)]
        layers += [InvertedResidual(width, k, int(s["stage1/expand_ratio"])) for _ in range(int(s["stage1/depth"]))]
        layers += [nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.PReLU(2 * width),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, self.embedding_size, bias=False),
                   nn.BatchNorm1d(self.embedding_size)]
        return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """expand 1x1 -> depthwise kxk -> project 1x1, added to its input (stride 1, same width)."""

    def __init__(self, width: int, kernel_size: int, expand_ratio: int):
        super().__init__()
        hidden = width * expand_ratio
        self.body = nn.Sequential(
            nn.Conv2d(width, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, kernel_size, 1, kernel_size // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.PReLU(hidden),
            nn.Conv2d(hidden, width, 1, bias=False), nn.BatchNorm2d(width))

    def forward(self, x):
        return x + self.body(x)


@SPACES.register("random_search_tiny")
def random_search_tiny(**config: Any) -> TinyCnnSpace:
    return TinyCnnSpace(**config)
