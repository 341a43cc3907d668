"""The TNAS search space: width and depth of an IResNet face student (TNAS Sec. "Teacher Guided
Neural Architecture Search", "Search for width" / "Search for depth").

The student is arcface_torch's IResNet (stem, four stride-2 stages of ``IBasicBlock``, BN-FC-BN
head) with configurable base widths -- e.g. the paper's "(1/2)ResNet50" is ``base="r50",
width_mult=0.5`` -- and maximum block counts. Every convolution's output width is a ratio of its
maximum (``width_ratios``, the paper's {0.3, 0.4, ..., 1.0}) and every stage's depth one of its
candidate block counts. A sample is a flat dict with the labels::

    stem/width_ratio                       stem conv output
    stage<s>/depth                         blocks in stage s (s = 1..4)
    stage<s>/width_ratio                   stage s's residual width (see below)
    stage<s>/block<b>/conv1/width_ratio    block b's first conv (inner width), b = 1..max depth

**Residual-connected convs.** In a stage, the output of every block's second conv and of the
first block's downsample conv are added together (the residual stream), so their widths must be
equal: they form one group with one choice, ``stage<s>/width_ratio``. The block's first conv
feeds only its own second conv, so it gets its own choice. The stem output is free as well (the
first block's downsample projects it). This keeps the derived network a plain IResNet rather
than padding mismatched sums with zeros. Block labels beyond the chosen depth are inactive.

Channel counts are ``max(1, floor(ratio * max + 0.5))``. FLOPs (multiply-accumulates of convs
and the FC layer, as :func:`facenas.nas.flops.count_flops`) are analytic, and
:meth:`TnasSpace.expected_flops` gives their exact expectation under independent categorical
distributions over the choices -- the differentiable ``E_cost(A)`` of Eq. 11.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

from facenas.errors import ConfigError
from facenas.nas.space import SPACES, Choice, LatencyBlock, SearchSpace, Value

#: the paper's width candidates (Sec. "Searching")
WIDTH_RATIOS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: IResNet reference widths (arcface_torch)
STEM_WIDTH = 64
STAGE_WIDTHS = (64, 128, 256, 512)

#: a tiny configuration for tests and the test-scale recipes (32x32 input, 16-d embedding)
TEST_SPACE: dict[str, Any] = {
    "layers": [1, 2, 1, 2], "stem_width": 8, "stage_widths": [8, 16, 16, 24],
    "embedding_size": 16, "input_size": 32,
}


def ratio_channels(ratio: float, max_channels: int) -> int:
    """Channels of a layer at ``ratio`` of ``max_channels`` (rounded half up, at least 1)."""
    return max(1, int(math.floor(float(ratio) * int(max_channels) + 0.5)))


def stem_label() -> str:
    return "stem/width_ratio"


def depth_label(stage: int) -> str:
    return f"stage{stage}/depth"


def stage_width_label(stage: int) -> str:
    return f"stage{stage}/width_ratio"


def inner_label(stage: int, block: int) -> str:
    return f"stage{stage}/block{block}/conv1/width_ratio"


@dataclasses.dataclass(frozen=True)
class ArchWidths:
    """Concrete widths of one architecture: stem, per-stage residual width, per-block inner widths."""

    stem: int
    stages: tuple[int, ...]
    inner: tuple[tuple[int, ...], ...]

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(m) for m in self.inner)


class TnasSpace(SearchSpace):
    """Width/depth space of an IResNet student.

    Args:
        layers: maximum blocks per stage (4 ints); ``base`` sets it from an arcface_torch name.
        stem_width: maximum stem width (before ``width_mult``).
        stage_widths: maximum residual width of each stage (before ``width_mult``).
        width_mult: scales the base widths as IResNet's ``width_mult`` (0.5 = "(1/2)ResNet").
        base: arcface_torch depth name (``r18``, ``r34``, ``r50``, ``r100``, ``r200``) giving ``layers``.
        width_ratios: candidate ratios of every width, ascending (``[1.0]`` = depth search only).
        depth_candidates: per stage, the candidate block counts, ascending (default 1..max;
            ``[[n] for n in layers]`` = width search only).
        embedding_size: output embedding dimension.
        input_size: input height/width (int or ``[H, W]``).
    """

    name = "tnas"

    def __init__(self, layers: Sequence[int] = (3, 4, 14, 3), stem_width: int = STEM_WIDTH,
                 stage_widths: Sequence[int] = STAGE_WIDTHS, width_mult: float = 1.0, base: str | None = None,
                 width_ratios: Sequence[float] = WIDTH_RATIOS, depth_candidates: Sequence[Sequence[int]] | None = None,
                 embedding_size: int = 512, input_size: int | Sequence[int] = 112):
        from facenas.adapters.insightface.backbones.iresnet import DEPTHS, scaled_width

        if base is not None:
            if base not in DEPTHS:
                raise ConfigError(f"tnas space: base={base!r} is not an IResNet depth; choose from {sorted(DEPTHS)}")
            layers = DEPTHS[base]
        layers = [int(n) for n in layers]
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ConfigError(f"tnas space: layers={layers} must be 4 block counts >= 1")
        if len(stage_widths) != 4 or any(int(c) < 1 for c in stage_widths) or int(stem_width) < 1:
            raise ConfigError(f"tnas space: stem_width={stem_width}, stage_widths={list(stage_widths)} must be "
                              "positive, with 4 stage widths")
        if width_mult <= 0:
            raise ConfigError(f"tnas space: width_mult={width_mult} must be > 0")
        ratios = [float(r) for r in width_ratios]
        if not ratios or any(not 0 < r <= 1 for r in ratios) or ratios != sorted(set(ratios)):
            raise ConfigError(f"tnas space: width_ratios={ratios} must be distinct, ascending, in (0, 1]")
        if depth_candidates is None:
            depth_candidates = [list(range(1, n + 1)) for n in layers]
        cands = [[int(d) for d in ds] for ds in depth_candidates]
        if len(cands) != 4:
            raise ConfigError(f"tnas space: depth_candidates={cands} needs one list per stage (4)")
        for s, (ds, n) in enumerate(zip(cands, layers), start=1):
            if not ds or ds != sorted(set(ds)) or ds[0] < 1 or ds[-1] != n:
                raise ConfigError(f"tnas space: depth_candidates of stage {s} = {ds} must be distinct, ascending, "
                                  f">= 1 and end at the stage's maximum depth {n} (layers={layers})")
        self.layers = layers
        self.stem_width = scaled_width(int(stem_width), width_mult)
        self.stage_widths = [scaled_width(int(c), width_mult) for c in stage_widths]
        self.width_ratios = ratios
        self.depth_candidates = cands
        self.embedding_size = int(embedding_size)
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        if self.embedding_size < 1 or min(self.input_size) < 16:
            raise ConfigError(f"tnas space: embedding_size={embedding_size} must be >= 1 and input_size="
                              f"{list(self.input_size)} >= 16")
        self._choices = self._make_choices()

    # -- choices -------------------------------------------------------------------------------
    def _make_choices(self) -> list[Choice]:
        r = tuple(self.width_ratios)
        out = [Choice(stem_label(), r)]
        for s in range(1, 5):
            out.append(Choice(depth_label(s), tuple(self.depth_candidates[s - 1])))
            out.append(Choice(stage_width_label(s), r))
            out += [Choice(inner_label(s, b), r) for b in range(1, self.layers[s - 1] + 1)]
        return out

    def choices(self) -> list[Choice]:
        return list(self._choices)

    def config(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers), "stem_width": self.stem_width, "stage_widths": list(self.stage_widths),
            "width_ratios": list(self.width_ratios), "depth_candidates": [list(d) for d in self.depth_candidates],
            "embedding_size": self.embedding_size, "input_size": list(self.input_size),
        }

    def max_channels(self, label: str) -> int:
        """The full width of a width label (stem, stage or inner conv)."""
        if label == stem_label():
            return self.stem_width
        stage = int(label.split("/")[0][len("stage"):])
        return self.stage_widths[stage - 1]

    def candidate_sizes(self, label: str) -> list[int]:
        """The sizes a label's candidates stand for: channel counts, or block counts for a depth."""
        choice = self.choice_map()[label]
        if label.endswith("/depth"):
            return [int(v) for v in choice.values]
        cmax = self.max_channels(label)
        return [ratio_channels(float(v), cmax) for v in choice.values]

    def uniform(self, ratio: float, depths: Sequence[int] | None = None) -> dict[str, Value]:
        """Every width at ``ratio`` (a candidate) and each stage at ``depths`` (default: its maximum)."""
        if float(ratio) not in self.width_ratios:
            raise ConfigError(f"ratio {ratio} is not a width candidate {self.width_ratios}")
        depths = list(depths) if depths is not None else list(self.layers)
        sample: dict[str, Value] = {}
        for c in self._choices:
            if c.label.endswith("/depth"):
                sample[c.label] = int(depths[int(c.label[len("stage")]) - 1])
            else:
                sample[c.label] = float(ratio)
        return self.validate(sample)

    # -- architectures -------------------------------------------------------------------------
    def widths(self, sample: Mapping[str, Value]) -> ArchWidths:
        """The concrete widths and depths of ``sample`` (validated)."""
        s = self.validate(sample)
        stages, inner = [], []
        for st in range(1, 5):
            w = self.stage_widths[st - 1]
            stages.append(ratio_channels(float(s[stage_width_label(st)]), w))
            depth = int(s[depth_label(st)])
            inner.append(tuple(ratio_channels(float(s[inner_label(st, b)]), w) for b in range(1, depth + 1)))
        return ArchWidths(ratio_channels(float(s[stem_label()]), self.stem_width), tuple(stages), tuple(inner))

    def build(self, sample: Mapping[str, Value]):
        from facenas.plugins.tnas.network import TnasIResNet

        aw = self.widths(sample)
        model = TnasIResNet(aw.stem, aw.stages, aw.inner, self.embedding_size, self.input_size)
        model.facenas_network = {"arch": self.describe(sample)}
        return model

    # -- FLOPs ---------------------------------------------------------------------------------
    def _flops(self, width: Callable[[str], Any], at_least: Callable[[int, int], Any]) -> Any:
        """MACs from ``width(label)`` (channels or their expectation) and ``at_least(stage, b)``
        (1/0 or the probability that stage ``stage`` has at least ``b`` blocks)."""
        h, w = self.input_size
        total = h * w * 9 * 3 * width(stem_label())
        c_in = width(stem_label())
        for s in range(1, 5):
            ho, wo = math.ceil(h / 2), math.ceil(w / 2)
            c_out = width(stage_width_label(s))
            for b in range(1, self.layers[s - 1] + 1):
                m = width(inner_label(s, b))
                if b == 1:
                    block = h * w * 9 * c_in * m + ho * wo * 9 * m * c_out + ho * wo * c_in * c_out
                else:
                    block = 2 * ho * wo * 9 * c_out * m
                total = total + at_least(s, b) * block
            h, w, c_in = ho, wo, c_out
        return total + c_in * h * w * self.embedding_size

    def flops(self, sample: Mapping[str, Value]) -> int:
        """MACs of the derived network at :attr:`input_size` (equals ``count_flops`` of :meth:`build`)."""
        aw = self.widths(sample)
        s = self.validate(sample)

        def width(label: str) -> int:
            return ratio_channels(float(s[label]), self.max_channels(label))

        return int(self._flops(width, lambda st, b: int(b <= aw.depths[st - 1])))

    def expected_flops(self, probs: Mapping[str, Any]) -> Any:
        """``E_cost(A)``: expected MACs when each choice is drawn independently from ``probs[label]``.

        ``probs[label]`` is a vector (torch tensor, numpy array or list) of probabilities over the
        label's candidates; the result is differentiable w.r.t. torch inputs. Exact: every FLOPs
        term is a product of widths of *different* choices (or a depth indicator times such a
        product), so its expectation is the product of expectations.
        """
        sizes = {c.label: self.candidate_sizes(c.label) for c in self._choices}

        def expect(label: str) -> Any:
            p = probs[label]
            return sum(p[j] * v for j, v in enumerate(sizes[label]))

        def at_least(stage: int, b: int) -> Any:
            p = probs[depth_label(stage)]
            return sum(p[j] for j, d in enumerate(sizes[depth_label(stage)]) if d >= b)

        return self._flops(expect, at_least)

    # -- latency lookup tables -----------------------------------------------------------------
    def _block_entries(self, aw: ArchWidths) -> list[LatencyBlock]:
        from facenas.plugins.tnas.network import TnasHead, TnasIBasicBlock, downsample, feature_size

        h, w = self.input_size
        stem = aw.stem
        out = [LatencyBlock(f"iresnet_stem|in=3x{h}x{w}|out={stem}", (3, h, w), _stem_builder(stem))]
        c_in = stem
        for s in range(4):
            planes = aw.stages[s]
            for b, mid in enumerate(aw.inner[s]):
                first = b == 0
                cin = c_in if first else planes
                key = f"ibasic|in={cin}x{h}x{w}|mid={mid}|out={planes}|s={2 if first else 1}|ds={int(first)}"
                out.append(LatencyBlock(key, (cin, h, w), _block_builder(TnasIBasicBlock, downsample, cin, mid, planes,
                                                                         first)))
                if first:
                    h, w = math.ceil(h / 2), math.ceil(w / 2)
            c_in = planes
        fh, fw = feature_size(self.input_size)
        out.append(LatencyBlock(f"iresnet_head|in={c_in}x{fh}x{fw}|emb={self.embedding_size}", (c_in, fh, fw),
                                _head_builder(TnasHead, c_in, (fh, fw), self.embedding_size)))
        return out

    def latency_blocks(self, sample: Mapping[str, Value]) -> list[LatencyBlock]:
        """Stem, every active ``IBasicBlock`` (input shape, inner/output width, stride) and the head."""
        return self._block_entries(self.widths(sample))

    def all_latency_blocks(self) -> list[LatencyBlock]:
        """Every distinct block of the space (first blocks: input x inner x output widths)."""
        from facenas.plugins.tnas.network import TnasHead, TnasIBasicBlock, downsample, feature_size

        seen: dict[str, LatencyBlock] = {}

        def add(block: LatencyBlock) -> None:
            seen.setdefault(block.key, block)

        h, w = self.input_size
        stems = sorted(set(self.candidate_sizes(stem_label())))
        for c in stems:
            add(LatencyBlock(f"iresnet_stem|in=3x{h}x{w}|out={c}", (3, h, w), _stem_builder(c)))
        prev = stems
        for s in range(1, 5):
            outs = sorted(set(self.candidate_sizes(stage_width_label(s))))
            mids = sorted(set(self.candidate_sizes(inner_label(s, 1))))
            for cin in prev:
                for mid in mids:
                    for planes in outs:
                        key = f"ibasic|in={cin}x{h}x{w}|mid={mid}|out={planes}|s=2|ds=1"
                        add(LatencyBlock(key, (cin, h, w), _block_builder(TnasIBasicBlock, downsample, cin, mid,
                                                                          planes, True)))
            h, w = math.ceil(h / 2), math.ceil(w / 2)
            if self.layers[s - 1] > 1:
                for mid in mids:
                    for planes in outs:
                        key = f"ibasic|in={planes}x{h}x{w}|mid={mid}|out={planes}|s=1|ds=0"
                        add(LatencyBlock(key, (planes, h, w), _block_builder(TnasIBasicBlock, downsample, planes,
                                                                             mid, planes, False)))
            prev = outs
        fh, fw = feature_size(self.input_size)
        for c in prev:
            add(LatencyBlock(f"iresnet_head|in={c}x{fh}x{fw}|emb={self.embedding_size}", (c, fh, fw),
                             _head_builder(TnasHead, c, (fh, fw), self.embedding_size)))
        return list(seen.values())


def _stem_builder(channels: int) -> Callable[[], Any]:
    def build():
        from torch import nn

        return nn.Sequential(nn.Conv2d(3, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels, eps=1e-05),
                             nn.PReLU(channels))

    return build


def _block_builder(block_cls: Any, ds: Any, cin: int, mid: int, planes: int, first: bool) -> Callable[[], Any]:
    def build():
        return block_cls(cin, mid, planes, 2 if first else 1, ds(cin, planes) if first else None)

    return build


def _head_builder(head_cls: Any, channels: int, spatial: tuple[int, int], embedding: int) -> Callable[[], Any]:
    def build():
        return head_cls(channels, spatial, embedding)

    return build


@SPACES.register("tnas")
def tnas(**config: Any) -> TnasSpace:
    """The TNAS width/depth space over an IResNet student (see :class:`TnasSpace`)."""
    return TnasSpace(**config)
