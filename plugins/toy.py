"""A tiny search space used by tests and examples (a real registry entry, as timm's ``test_*``).

It has 4 choices (16 samples) and builds a small CNN, so NNI strategies and facenas strategies
can be exercised end to end in seconds. Not meant for real face recognition.
"""
from __future__ import annotations

from typing import Any, Mapping

from facenas.nas.space import SPACES, Choice, LatencyBlock, SearchSpace, Value


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
        layers: list[nn.Module] = self._stem(width)
        for _ in range(int(s["block/depth"])):
            layers += self._block(width, k, str(s["block/op"]))
        layers += self._head(width)
        return nn.Sequential(*layers)

    # -- parts (shared by build and the latency blocks, so a table's blocks are the network's) --------
    @staticmethod
    def _stem(width: int) -> list:
        from torch import nn

        return [nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]

    @staticmethod
    def _block(width: int, kernel_size: int, op: str) -> list:
        from torch import nn

        groups = width if op == "dwconv" else 1
        return [nn.Conv2d(width, width, kernel_size, 1, kernel_size // 2, groups=groups, bias=False),
                nn.BatchNorm2d(width), nn.ReLU()]

    def _head(self, width: int) -> list:
        from torch import nn

        return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, self.embedding_size)]

    # -- latency lookup tables -----------------------------------------------------------------------
    def _latency_parts(self, width: int) -> tuple[LatencyBlock, LatencyBlock, tuple[int, int]]:
        from torch import nn

        h, w = self.input_size
        fh, fw = -(-h // 2), -(-w // 2)
        stem = LatencyBlock(f"conv|in=3x{h}x{w}|out={width}x{fh}x{fw}|k=3|s=2|act=relu", (3, h, w),
                            lambda: nn.Sequential(*self._stem(width)))
        head = LatencyBlock(f"head|in={width}x{fh}x{fw}|out={self.embedding_size}", (width, fh, fw),
                            lambda: nn.Sequential(*self._head(width)))
        return stem, head, (fh, fw)

    def _latency_block(self, width: int, k: int, op: str, size: tuple[int, int]) -> LatencyBlock:
        from torch import nn

        shape = f"{width}x{size[0]}x{size[1]}"
        return LatencyBlock(f"{op}|in={shape}|out={shape}|k={k}|s=1|act=relu", (width, *size),
                            lambda: nn.Sequential(*self._block(width, k, op)))

    def latency_blocks(self, sample: Mapping[str, Value]) -> list[LatencyBlock]:
        s = self.validate(sample)
        width = int(s["stem/width"])
        stem, head, size = self._latency_parts(width)
        block = self._latency_block(width, int(s["block/kernel_size"]), str(s["block/op"]), size)
        return [stem] + [block] * int(s["block/depth"]) + [head]

    def all_latency_blocks(self) -> list[LatencyBlock]:
        out: dict[str, LatencyBlock] = {}
        for width in self.choice_map()["stem/width"].values:
            stem, head, size = self._latency_parts(int(width))
            out[stem.key], out[head.key] = stem, head
            for k in self.choice_map()["block/kernel_size"].values:
                for op in self.choice_map()["block/op"].values:
                    block = self._latency_block(int(width), int(k), str(op), size)
                    out[block.key] = block
        return list(out.values())


@SPACES.register("toy")
def toy(**config: Any) -> ToySpace:
    return ToySpace(**config)
