"""A tiny search space used by tests and examples (a real registry entry, as timm's ``test_*``).

It has 4 choices (16 samples) and builds a small CNN, so NNI strategies and facenas strategies
can be exercised end to end in seconds. Not meant for real face recognition.
"""
from __future__ import annotations

from typing import Any, Mapping

from facenas.plugins.space import SPACES, Choice, SearchSpace, Value


class ToySpace(SearchSpace):
    """Tiny CNN space: stem width, kernel size, block count, and block type.

    Args:
        embedding_size: output embedding dimension.
        input_size: input resolution (square).
    """

    name = "toy"

    def __init__(self, embedding_size: int = 32, input_size: int = 32):
        self.embedding_size = embedding_size
        self.input_size = (input_size, input_size)

    def choices(self) -> list[Choice]:
        return [
            Choice("stem/width", (8, 16)),
            Choice("block/kernel_size", (3, 5)),
            Choice("block/depth", (1, 2)),
            Choice("block/op", ("conv", "dwconv")),
        ]

    def config(self) -> dict[str, Any]:
        return {"embedding_size": self.embedding_size, "input_size": self.input_size[0]}

    def build(self, sample: Mapping[str, Value]):
        from torch import nn

        s = self.validate(sample)
        width, k = int(s["stem/width"]), int(s["block/kernel_size"])
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(int(s["block/depth"])):
            groups = width if s["block/op"] == "dwconv" else 1
            layers += [nn.Conv2d(width, width, k, 1, k // 2, groups=groups, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, self.embedding_size)]
        return nn.Sequential(*layers)


@SPACES.register("toy")
def toy(**config: Any) -> ToySpace:
    return ToySpace(**config)
