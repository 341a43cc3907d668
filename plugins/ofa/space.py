"""The ``ofa`` search space: elastic MobileNetV3 for faces (Savchenko et al. 2023, Sec. IV-A).

A sample chooses, for each of the five stages, its depth and every block's kernel size and
expand ratio (OFA's ``d``, ``ks``, ``e``)::

    stage1/depth, stage1/block1/kernel_size, stage1/block1/expand_ratio, ..., stage5/block4/expand_ratio

Labels of blocks beyond a stage's depth are *inactive*: they are sampled like the others (so the
sample format is flat and fixed) but do not change the network; :meth:`OFASpace.canonical`
resets them and :meth:`OFASpace.encode` zeroes them, as OFA's ``MobileNetArchEncoder`` does.

The space config (:meth:`OFASpace.config`) fixes the rest: input size (112 by default, 224 as in
the paper), ``width_mult``, the embedding head (``conv``: the paper's 1x1 conv to a wide
descriptor; ``gdc``: MobileFaceNet's global depthwise conv), embedding size, candidate lists and
channel/stride layout. ``ofa_tiny`` is a real registry entry with the same structure at toy width
and 32x32 input, for tests.

Latency lookup tables: :meth:`OFASpace.latency_blocks` lists a sample's blocks with OFA-style
keys (input/output shape, kernel, expand, stride, SE, activation, plus the fixed first conv,
first block and head); :meth:`OFASpace.all_latency_blocks` lists every distinct one (per stage:
first block and later blocks x kernels x expand ratios).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from facenas.errors import ConfigError
from facenas.nas.space import SPACES, Choice, LatencyBlock, SearchSpace, Value

from .blocks import HEADS, ConvBNAct, MBConv, MBConvSpec, build_head
from .network import Layout, OFAFaceNet, OFASupernet, StageChoice
from .ops import make_divisible, se_channels

#: OFA's OFAMobileNetV3 channel layout before ``width_mult``: stem, first block, 5 stages, final expand
OFA_BASE_CHANNELS = (16, 16, 24, 40, 80, 112, 160, 960)
OFA_STAGE_STRIDES = (2, 2, 2, 1, 2)
OFA_STAGE_ACTIVATIONS = ("relu", "relu", "hswish", "hswish", "hswish")
OFA_STAGE_SE = (False, True, False, True, True)
#: OFA's activation of the first conv and of the head's expansion
OFA_OUTER_ACTIVATION = "hswish"
#: the activations a space's blocks may use
SPACE_ACTIVATIONS = ("relu", "hswish")

#: the test-scale configuration registered as ``ofa_tiny``
TINY_CONFIG: dict[str, Any] = {
    "input_size": 32,
    "embedding_size": 16,
    "base_channels": [8, 8, 8, 16, 16, 24, 24, 32],
}


@dataclasses.dataclass(frozen=True)
class GenomeLayout:
    """Column indices of a genome (a sample as candidate indices, in :meth:`OFASpace.choices` order).

    Attributes:
        depth: ``(S,)`` columns of the stages' depths.
        kernel: ``(S, D)`` columns of the blocks' kernel sizes.
        expand: ``(S, D)`` columns of the blocks' expand ratios.
        sizes: ``(n_choices,)`` number of candidates of each column.
    """

    depth: np.ndarray
    kernel: np.ndarray
    expand: np.ndarray
    sizes: np.ndarray


class OFASpace(SearchSpace):
    """Elastic MobileNetV3 face space.

    Args:
        input_size: square input resolution (112; 224 as in the paper; 64 at CPU scale).
        embedding_size: embedding dimension.
        width_mult: multiplies every channel count (OFA's w1.0 / w1.2 supernets).
        head: ``conv`` (the paper's / OFA's 1x1 conv head) or ``gdc`` (MobileFaceNet's GDC).
        kernel_sizes: kernel-size candidates (OFA: 3, 5, 7).
        expand_ratios: expand-ratio candidates (OFA: 3, 4, 6).
        depths: depth candidates per stage (OFA: 2, 3, 4).
        base_channels: stem, first block, five stages and head widths before ``width_mult``.
        stage_strides: stride of each stage's first block (OFA: 2, 2, 2, 1, 2).
        first_block_stride: stride of the fixed first block (OFA: 1).
        stage_activations: ``relu`` / ``hswish`` per stage; the fixed first block uses the first stage's
            (OFA: relu relu hswish hswish hswish).
        stage_se: squeeze-and-excitation per stage (OFA: no yes no yes yes).
        stem_activation, head_activation: of the first conv and of the head's 1x1 expansion (OFA: hswish).
            A ReLU-only face space (every activation ``relu``, no SE) is MobileFaceNet's kind of
            network with ReLU in place of its PReLU (its usual mobile variant).
    """

    name = "ofa"

    def __init__(self, input_size: int = 112, embedding_size: int = 512, width_mult: float = 1.0,
                 head: str = "conv", kernel_sizes: Sequence[int] = (3, 5, 7),
                 expand_ratios: Sequence[float] = (3, 4, 6), depths: Sequence[int] = (2, 3, 4),
                 base_channels: Sequence[int] = OFA_BASE_CHANNELS, stage_strides: Sequence[int] = OFA_STAGE_STRIDES,
                 first_block_stride: int = 1, stage_activations: Sequence[str] = OFA_STAGE_ACTIVATIONS,
                 stage_se: Sequence[bool] = OFA_STAGE_SE, stem_activation: str = OFA_OUTER_ACTIVATION,
                 head_activation: str = OFA_OUTER_ACTIVATION):
        def bad(field: str, value: Any, why: str) -> ConfigError:
            return ConfigError(f"ofa space: {field}={value!r} {why}")

        if not isinstance(input_size, int) or not 16 <= input_size <= 1024:
            raise bad("input_size", input_size, "must be an integer in [16, 1024] (112 by default, 224 as in the paper)")
        if not isinstance(embedding_size, int) or embedding_size < 1:
            raise bad("embedding_size", embedding_size, "must be a positive integer")
        if not width_mult > 0:
            raise bad("width_mult", width_mult, "must be > 0")
        if head not in HEADS:
            raise bad("head", head, f"is not one of {list(HEADS)}")
        ks = tuple(sorted(int(k) for k in kernel_sizes))
        if not ks or any(k < 1 or k % 2 == 0 for k in ks) or len(set(ks)) != len(ks):
            raise bad("kernel_sizes", list(kernel_sizes), "must be distinct odd sizes, e.g. [3, 5, 7]")
        es = tuple(sorted(_number(e) for e in expand_ratios))
        if not es or any(e <= 1 for e in es) or len(set(es)) != len(es):
            raise bad("expand_ratios", list(expand_ratios), "must be distinct ratios > 1, e.g. [3, 4, 6]")
        ds = tuple(sorted(int(d) for d in depths))
        if not ds or ds[0] < 1 or len(set(ds)) != len(ds):
            raise bad("depths", list(depths), "must be distinct depths >= 1, e.g. [2, 3, 4]")
        if len(base_channels) != 8 or any(int(c) < 1 for c in base_channels):
            raise bad("base_channels", list(base_channels),
                      "needs 8 positive widths: stem, first block, 5 stages, head (OFA: 16 16 24 40 80 112 160 960)")
        if len(stage_strides) != 5 or any(int(s) not in (1, 2) for s in stage_strides):
            raise bad("stage_strides", list(stage_strides), "needs 5 strides of 1 or 2 (OFA: 2 2 2 1 2)")
        if first_block_stride not in (1, 2):
            raise bad("first_block_stride", first_block_stride, "must be 1 or 2")
        if (isinstance(stage_activations, str) or len(stage_activations) != 5
                or any(a not in SPACE_ACTIVATIONS for a in stage_activations)):
            raise bad("stage_activations", stage_activations,
                      f"needs 5 of {list(SPACE_ACTIVATIONS)} (OFA: relu relu hswish hswish hswish)")
        if len(stage_se) != 5 or any(not isinstance(v, bool) for v in stage_se):
            raise bad("stage_se", stage_se, "needs 5 booleans (OFA: false true false true true)")
        for field, value in (("stem_activation", stem_activation), ("head_activation", head_activation)):
            if value not in SPACE_ACTIVATIONS:
                raise bad(field, value, f"is not one of {list(SPACE_ACTIVATIONS)} (OFA: hswish)")
        self.input_size = (input_size, input_size)
        self.embedding_size = int(embedding_size)
        self.width_mult = float(width_mult)
        self.head = head
        self.kernel_sizes, self.expand_ratios, self.depths = ks, es, ds
        self.base_channels = tuple(int(c) for c in base_channels)
        self.stage_strides = tuple(int(s) for s in stage_strides)
        self.first_block_stride = int(first_block_stride)
        self.stage_activations = tuple(stage_activations)
        self.stage_se = tuple(stage_se)
        self.stem_activation, self.head_activation = stem_activation, head_activation
        widths = [make_divisible(c * self.width_mult) for c in self.base_channels]
        self.layout = Layout(
            input_size=self.input_size, stem_channels=widths[0], first_block_channels=widths[1],
            stage_channels=tuple(widths[2:7]), first_block_stride=self.first_block_stride,
            stage_strides=self.stage_strides, stage_activations=self.stage_activations, stage_se=self.stage_se,
            first_block_activation=self.stage_activations[0], head=head, head_channels=widths[7],
            embedding_size=self.embedding_size, kernel_sizes=ks, expand_ratios=es, depths=ds,
            stem_activation=stem_activation, head_activation=head_activation)
        self._choices = self._make_choices()
        self._genome = self._make_genome_layout()

    # -- SearchSpace interface ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size[0], "embedding_size": self.embedding_size, "width_mult": self.width_mult,
            "head": self.head, "kernel_sizes": list(self.kernel_sizes), "expand_ratios": list(self.expand_ratios),
            "depths": list(self.depths), "base_channels": list(self.base_channels),
            "stage_strides": list(self.stage_strides), "first_block_stride": self.first_block_stride,
            **self._non_default_blocks(),
        }

    def _non_default_blocks(self) -> dict[str, Any]:
        """The block options that differ from OFA's, only: a default space's config (and so every recorded
        architecture and latency table of one) reads as before these options existed."""
        out: dict[str, Any] = {}
        if self.stage_activations != OFA_STAGE_ACTIVATIONS:
            out["stage_activations"] = list(self.stage_activations)
        if self.stage_se != OFA_STAGE_SE:
            out["stage_se"] = list(self.stage_se)
        if self.stem_activation != OFA_OUTER_ACTIVATION:
            out["stem_activation"] = self.stem_activation
        if self.head_activation != OFA_OUTER_ACTIVATION:
            out["head_activation"] = self.head_activation
        return out

    def _make_choices(self) -> list[Choice]:
        out = []
        for s in range(1, self.layout.num_stages + 1):
            out.append(Choice(f"stage{s}/depth", self.depths))
            for b in range(1, self.layout.max_depth + 1):
                out.append(Choice(f"stage{s}/block{b}/kernel_size", self.kernel_sizes))
                out.append(Choice(f"stage{s}/block{b}/expand_ratio", self.expand_ratios))
        return out

    def choices(self) -> list[Choice]:
        return list(self._choices)

    def build(self, sample: Mapping[str, Value]) -> OFAFaceNet:
        """A static subnet for ``sample`` with fresh weights (same parameter names as an extracted one)."""
        return OFAFaceNet(self.layout, self.arch(sample))

    def supernet(self) -> OFASupernet:
        """The elastic supernet of this space (largest weights, freshly initialised)."""
        return OFASupernet(self.layout)

    # -- samples <-> architectures ------------------------------------------------------------------
    def arch(self, sample: Mapping[str, Value]) -> list[StageChoice]:
        """Per-stage depth, kernel sizes and expand ratios of the *active* blocks of ``sample``."""
        s = self.validate(sample)
        out = []
        for i in range(1, self.layout.num_stages + 1):
            depth = int(s[f"stage{i}/depth"])
            out.append(StageChoice(depth,
                                   tuple(int(s[f"stage{i}/block{j}/kernel_size"]) for j in range(1, depth + 1)),
                                   tuple(s[f"stage{i}/block{j}/expand_ratio"] for j in range(1, depth + 1))))
        return out

    def sample_from_arch(self, arch: Sequence[StageChoice]) -> dict[str, Value]:
        """The canonical sample of an architecture (inactive blocks at the smallest candidates)."""
        out: dict[str, Value] = {}
        for i, choice in enumerate(arch, start=1):
            out[f"stage{i}/depth"] = choice.depth
            for j in range(1, self.layout.max_depth + 1):
                active = j <= choice.depth
                out[f"stage{i}/block{j}/kernel_size"] = choice.kernel_sizes[j - 1] if active else self.kernel_sizes[0]
                out[f"stage{i}/block{j}/expand_ratio"] = choice.expand_ratios[j - 1] if active else self.expand_ratios[0]
        return self.validate(out)

    def canonical(self, sample: Mapping[str, Value]) -> dict[str, Value]:
        """``sample`` with inactive blocks reset to the smallest candidates (equal networks, equal samples)."""
        return self.sample_from_arch(self.arch(sample))

    def encode(self, sample: Mapping[str, Value]) -> np.ndarray:
        """OFA's architecture encoding: one-hot kernel and expand per block, zeros for inactive blocks."""
        return self.encode_genomes(self.genome(sample)[None])[0]

    # -- genomes: samples as integer arrays, for fast vectorised search ------------------------------------
    def _make_genome_layout(self) -> GenomeLayout:
        labels = [c.label for c in self._choices]
        col = {label: i for i, label in enumerate(labels)}
        S, D = self.layout.num_stages, self.layout.max_depth
        depth = np.array([col[f"stage{i}/depth"] for i in range(1, S + 1)])
        kernel = np.array([[col[f"stage{i}/block{j}/kernel_size"] for j in range(1, D + 1)] for i in range(1, S + 1)])
        expand = np.array([[col[f"stage{i}/block{j}/expand_ratio"] for j in range(1, D + 1)] for i in range(1, S + 1)])
        sizes = np.array([len(c.values) for c in self._choices])
        return GenomeLayout(depth, kernel, expand, sizes)

    @property
    def genome_layout(self) -> GenomeLayout:
        return self._genome

    def genome(self, sample: Mapping[str, Value]) -> np.ndarray:
        """``sample`` as candidate indices (int64), in :meth:`choices` order."""
        s = self.validate(sample)
        return np.array([c.index(s[c.label]) for c in self._choices], dtype=np.int64)

    def sample_from_genome(self, genome: Sequence[int]) -> dict[str, Value]:
        return {c.label: c.values[int(i)] for c, i in zip(self._choices, genome)}

    def active_mask(self, genomes: np.ndarray) -> np.ndarray:
        """``(N, S, D)`` bool: which blocks of each genome are active."""
        depth = np.asarray(self.depths)[genomes[:, self._genome.depth]]  # (N, S)
        return np.arange(self.layout.max_depth)[None, None, :] < depth[:, :, None]

    def encode_genomes(self, genomes: np.ndarray) -> np.ndarray:
        """OFA encodings of ``(N, n_choices)`` genomes: ``(N, S * D * (nK + nE))`` float32, binary."""
        g = self._genome
        genomes = np.asarray(genomes)
        n = genomes.shape[0]
        nk, ne = len(self.kernel_sizes), len(self.expand_ratios)
        mask = self.active_mask(genomes)  # (N, S, D)
        k = np.eye(nk, dtype=np.float32)[genomes[:, g.kernel]] * mask[..., None]  # (N, S, D, nK)
        e = np.eye(ne, dtype=np.float32)[genomes[:, g.expand]] * mask[..., None]
        return np.concatenate([k, e], axis=-1).reshape(n, self.layout.num_stages * self.layout.max_depth * (nk + ne))

    def canonical_genomes(self, genomes: np.ndarray) -> np.ndarray:
        """Genomes with inactive blocks' columns set to 0 (the smallest candidate)."""
        g = self._genome
        out = np.array(genomes, copy=True)
        inactive = ~self.active_mask(out)
        k, e = out[:, g.kernel], out[:, g.expand]
        k[inactive] = 0
        e[inactive] = 0
        out[:, g.kernel], out[:, g.expand] = k, e
        return out

    def random_genomes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uniformly random genomes (as :meth:`sample` draws)."""
        return (rng.random((n, len(self._choices))) * self._genome.sizes).astype(np.int64)

    # -- costs ------------------------------------------------------------------------------------------
    def block_spec(self, stage: int, position: int, kernel_size: int, expand_ratio: float) -> MBConvSpec:
        return self.layout.block_spec(stage, position, kernel_size, expand_ratio)

    def block_flops(self, spec: MBConvSpec, in_size: tuple[int, int]) -> int:
        """Multiply-accumulates of one block (convs of expansion, depthwise, SE and projection)."""
        h, w = in_size
        ho, wo = -(-h // spec.stride), -(-w // spec.stride)
        mid = spec.mid_channels
        macs = 0
        if spec.expand_ratio != 1:
            macs += h * w * spec.in_channels * mid
        macs += ho * wo * mid * spec.kernel_size ** 2
        if spec.use_se:
            macs += 2 * mid * se_channels(mid)
        macs += ho * wo * mid * spec.out_channels
        return macs

    def fixed_flops(self) -> int:
        """MACs of the parts every subnet shares: first conv, first block, head."""
        lay = self.layout
        sh, sw = lay.stem_output_size()
        macs = sh * sw * lay.stem_channels * 27
        macs += self.block_flops(lay.first_block_spec(), (sh, sw))
        fh, fw = lay.final_size()
        cin, mid, emb = lay.stage_channels[-1], lay.head_channels, lay.embedding_size
        macs += fh * fw * cin * mid
        if lay.head == "conv":
            macs += mid * emb
        else:
            macs += fh * fw * mid + mid * emb
        return macs

    def flops(self, sample: Mapping[str, Value]) -> int:
        """MACs of ``sample``'s network at :attr:`input_size` (analytic; equals ``count_flops``)."""
        total = self.fixed_flops()
        for stage, choice in enumerate(self.arch(sample)):
            for j in range(choice.depth):
                spec = self.block_spec(stage, j, choice.kernel_sizes[j], choice.expand_ratios[j])
                total += self.block_flops(spec, self.layout.block_input_size(stage, j))
        return total

    # -- latency lookup tables -------------------------------------------------------------------------
    @staticmethod
    def _shape(c: int, size: tuple[int, int]) -> str:
        return f"{c}x{size[0]}x{size[1]}"

    def block_key(self, spec: MBConvSpec, in_size: tuple[int, int]) -> str:
        out_size = (-(-in_size[0] // spec.stride), -(-in_size[1] // spec.stride))
        return (f"mbconv|in={self._shape(spec.in_channels, in_size)}|out={self._shape(spec.out_channels, out_size)}"
                f"|k={spec.kernel_size}|e={spec.expand_ratio:g}|s={spec.stride}|se={int(spec.use_se)}"
                f"|act={spec.activation}")

    def _block(self, spec: MBConvSpec, in_size: tuple[int, int]) -> LatencyBlock:
        return LatencyBlock(self.block_key(spec, in_size), (spec.in_channels, *in_size), lambda: MBConv(spec))

    def fixed_latency_blocks(self) -> list[LatencyBlock]:
        """First conv, first block and head: in every subnet."""
        lay = self.layout
        stem_out = lay.stem_output_size()
        inp = self.input_size
        stem = LatencyBlock(
            f"conv|in={self._shape(3, inp)}|out={self._shape(lay.stem_channels, stem_out)}|k=3|s=2"
            f"|act={lay.stem_activation}",
            (3, *inp), lambda: ConvBNAct(3, lay.stem_channels, 3, 2, lay.stem_activation))
        first = self._block(lay.first_block_spec(), stem_out)
        fsize = lay.final_size()
        cin = lay.stage_channels[-1]
        # the head's key names its activation only when it is not OFA's, so shipped tables keep their keys
        act = "" if lay.head_activation == OFA_OUTER_ACTIVATION else f"|act={lay.head_activation}"
        head = LatencyBlock(
            f"head_{lay.head}|in={self._shape(cin, fsize)}|mid={lay.head_channels}|out={lay.embedding_size}{act}",
            (cin, *fsize),
            lambda: build_head(lay.head, cin, lay.head_channels, lay.embedding_size, fsize, lay.head_activation))
        return [stem, first, head]

    def latency_blocks(self, sample: Mapping[str, Value]) -> list[LatencyBlock]:
        fixed = self.fixed_latency_blocks()
        blocks = fixed[:2]
        for stage, choice in enumerate(self.arch(sample)):
            for j in range(choice.depth):
                spec = self.block_spec(stage, j, choice.kernel_sizes[j], choice.expand_ratios[j])
                blocks.append(self._block(spec, self.layout.block_input_size(stage, j)))
        return blocks + fixed[2:]

    def all_latency_blocks(self) -> list[LatencyBlock]:
        blocks = {b.key: b for b in self.fixed_latency_blocks()}
        for stage in range(self.layout.num_stages):
            for position in (0, 1) if self.layout.max_depth > 1 else (0,):
                for k in self.kernel_sizes:
                    for e in self.expand_ratios:
                        spec = self.block_spec(stage, position, k, e)
                        block = self._block(spec, self.layout.block_input_size(stage, position))
                        blocks.setdefault(block.key, block)
        return list(blocks.values())

    def describe_arch(self, sample: Mapping[str, Value]) -> str:
        """Compact readable form: ``d4:k7e6,k5e4,... | d2:...``."""
        parts = []
        for choice in self.arch(sample):
            blocks = ",".join(f"k{k}e{e:g}" for k, e in zip(choice.kernel_sizes, choice.expand_ratios))
            parts.append(f"d{choice.depth}:{blocks}")
        return " | ".join(parts)


def _number(value: Any) -> int | float:
    f = float(value)
    return int(f) if f.is_integer() else f


@SPACES.register("ofa")
def ofa(**config: Any) -> OFASpace:
    """The OFA face space (OFAMobileNetV3 layout, 112x112, ``conv`` head, 512-d by default)."""
    return OFASpace(**config)


@SPACES.register("ofa_tiny")
def ofa_tiny(**config: Any) -> OFASpace:
    """Test-scale OFA space: same choices and structure, 8-32 channels, 32x32 input, 16-d embedding."""
    return OFASpace(**{**TINY_CONFIG, **config})
