"""The search-space interface every facenas method implements, and its registry.

A *sample* is a flat ``dict[label, value]`` with stable, readable labels such as
``stage2/depth`` or ``stage2/block1/kernel_size``. A space lists its
choices, samples and validates samples, builds a standalone backbone for a sample and reports its
FLOPs and parameters. The same sample format is what NNI's strategies see through
:mod:`facenas.adapters.nni`, what predictors encode, and what is saved as an architecture
description that :func:`facenas.get_model` rebuilds.

Backbones map ``(B, 3, H, W)`` float images normalised as InsightFace does (``(x/255-0.5)/0.5``)
to ``(B, embedding_size)`` embeddings, not normalised.
"""
from __future__ import annotations

import abc
import dataclasses
import difflib
import inspect
import json
import os
import typing
from typing import Any, Mapping, Sequence

import numpy as np

from facenas.errors import ConfigError, FacenasError
from facenas.methods import method_modules
from facenas.registry import Registry

Value = int | float | str
Sample = dict[str, Value]

#: Format tag of saved architecture descriptions.
ARCH_FORMAT = "facenas.arch/1"

#: Spaces: the toy space (tests, demo) and every installed method's (``facenas.methods`` entry points).
SPACES: Registry = Registry("search space", modules=["facenas.plugins.toy"],
                            discover=lambda: method_modules("spaces"))


class InvalidSampleError(FacenasError, ValueError):
    """A sample misses labels, has unknown ones, or a value outside a label's candidates."""


@dataclasses.dataclass(frozen=True)
class Choice:
    """One categorical decision of a space.

    Args:
        label: stable name, ``/``-separated from coarse to fine (``stage2/block1/kernel_size``).
        values: the candidate values, in a meaningful order (small to large where that applies).
    """

    label: str
    values: tuple[Value, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"choice '{self.label}' has no candidate values")
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"choice '{self.label}' has repeated values {self.values}")

    def index(self, value: Value) -> int:
        return self.values.index(value)


@dataclasses.dataclass(frozen=True)
class LatencyBlock:
    """One entry of a latency lookup table: a block a space's networks are assembled from.

    Args:
        key: canonical string naming everything that changes the block's latency (op type,
            input and output shape, kernel, expand ratio, stride, SE, activation), e.g.
            ``"mbconv|in=16x56x56|out=24x28x28|k=5|e=4|s=2|se=1|act=hswish"``.
        input_shape: ``(C, H, W)`` of the block's input (batch 1 is used for measuring).
        build: makes the block as a standalone ``nn.Module`` (random weights are fine).
    """

    key: str
    input_shape: tuple[int, int, int]
    build: Any = dataclasses.field(compare=False, repr=False)


class SearchSpace(abc.ABC):
    """Base class of search spaces.

    Subclasses define :meth:`choices` and :meth:`build`, and :meth:`config` returning the keyword
    arguments that rebuild the same space (so a sample plus the config describe a network fully).
    Everything else has a generic default that a subclass may specialise (e.g. analytic FLOPs).
    """

    #: registry name of the space
    name: str = ""
    #: input resolution (H, W) networks of this space expect
    input_size: tuple[int, int] = (112, 112)

    # -- what subclasses implement -------------------------------------------------------------
    @abc.abstractmethod
    def choices(self) -> list[Choice]:
        """All decisions, in a stable order."""

    @abc.abstractmethod
    def build(self, sample: Mapping[str, Value]):
        """A standalone ``torch.nn.Module`` for ``sample`` with freshly initialised weights."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor kwargs that rebuild this space."""

    # -- generic behaviour ---------------------------------------------------------------------
    def choice_map(self) -> dict[str, Choice]:
        return {c.label: c for c in self.choices()}

    def labels(self) -> list[str]:
        return [c.label for c in self.choices()]

    def sample(self, rng: np.random.Generator) -> Sample:
        """A uniformly random sample, drawn from ``rng``."""
        return {c.label: c.values[int(rng.integers(len(c.values)))] for c in self.choices()}

    def largest(self) -> Sample:
        """Each choice's last candidate (the largest network where values are ordered)."""
        return {c.label: c.values[-1] for c in self.choices()}

    def smallest(self) -> Sample:
        """Each choice's first candidate."""
        return {c.label: c.values[0] for c in self.choices()}

    def validate(self, sample: Mapping[str, Any]) -> Sample:
        """Return ``sample`` in label order with numpy scalars unwrapped; raise on any problem.

        Missing labels are listed with the existing ones; unknown labels with close matches;
        a bad value with the label's candidates.
        """
        cmap = self.choice_map()
        missing = [k for k in cmap if k not in sample]
        unknown = [k for k in sample if k not in cmap]
        problems = []
        if missing:
            problems.append(f"missing label(s) {missing}")
        for k in unknown:
            close = difflib.get_close_matches(k, list(cmap), n=2, cutoff=0.6)
            problems.append(f"unknown label '{k}'" + (f" (did you mean {close}?)" if close else ""))
        if problems:
            raise InvalidSampleError(
                f"sample does not fit space '{self.name}': {'; '.join(problems)}. Labels: {list(cmap)}"
            )
        out: Sample = {}
        for label, choice in cmap.items():
            value = sample[label]
            if isinstance(value, np.generic):
                value = value.item()
            if value not in choice.values:
                raise InvalidSampleError(
                    f"sample value {label}={value!r} is not a candidate of space '{self.name}'; "
                    f"candidates: {list(choice.values)}"
                )
            # normalise e.g. 3.0 -> 3 when candidates are ints
            out[label] = choice.values[choice.index(value)]
        return out

    def encode(self, sample: Mapping[str, Value]) -> np.ndarray:
        """One-hot encoding of ``sample`` (concatenated over choices), for predictors."""
        parts = []
        for c in self.choices():
            onehot = np.zeros(len(c.values), dtype=np.float32)
            onehot[c.index(sample[c.label])] = 1.0
            parts.append(onehot)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def flops(self, sample: Mapping[str, Value]) -> int:
        """Multiply-accumulates of one forward pass at :attr:`input_size` (batch 1)."""
        from facenas.nas.flops import count_flops

        return count_flops(self.build(sample), (1, 3, *self.input_size))

    def params(self, sample: Mapping[str, Value]) -> int:
        """Number of parameters of the standalone network."""
        return sum(p.numel() for p in self.build(sample).parameters())

    def describe(self, sample: Mapping[str, Value]) -> dict[str, Any]:
        """The architecture description that :func:`build_from_description` rebuilds."""
        return {
            "format": ARCH_FORMAT,
            "space": self.name,
            "space_config": self.config(),
            "sample": self.validate(sample),
        }

    # -- latency lookup tables (optional; see facenas.adapters.runtime.lut) ------------------------
    def latency_blocks(self, sample: Mapping[str, Value]) -> list[LatencyBlock]:
        """The blocks of ``sample``'s network whose summed latency predicts the network's."""
        raise NotImplementedError(f"space '{self.name}' does not describe its blocks for latency tables")

    def all_latency_blocks(self) -> list[LatencyBlock]:
        """Every distinct block (by key) any sample of the space can contain."""
        raise NotImplementedError(f"space '{self.name}' does not describe its blocks for latency tables")

    def size(self) -> int:
        """Number of distinct samples (product of candidate counts; labels may be inactive)."""
        n = 1
        for c in self.choices():
            n *= len(c.values)
        return n


def _keywords(obj: Any) -> tuple[list[str], bool] | None:
    """``(named keyword parameters, whether it also takes **kwargs)`` of a callable; None without a signature."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    return ([p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)],
            any(p.kind is p.VAR_KEYWORD for p in params))


def _options(factory: Any) -> list[str] | None:
    """The options a space factory takes: its own keyword parameters, or, where it passes ``**config`` on to the
    space class its return annotation names, that class's; None when they cannot be known."""
    own = _keywords(factory)
    if own is None or not own[1]:
        return None if own is None else own[0]
    try:
        cls = typing.get_type_hints(factory).get("return")
    except Exception:  # noqa: BLE001 - an unresolvable annotation: the options cannot be known
        return None
    inner = _keywords(cls) if isinstance(cls, type) and issubclass(cls, SearchSpace) else None
    return inner[0] if inner is not None and not inner[1] else None


def create_space(name: str, **config: Any) -> SearchSpace:
    """Build the registered space ``name`` with ``config`` (its :meth:`SearchSpace.config`); an option the
    space does not take is a :class:`ConfigError` naming it and the options it takes."""
    factory = SPACES.get(name)
    options = _options(factory)
    unknown = sorted(set(config) - set(options)) if options is not None else []
    if unknown:
        raise ConfigError(f"space '{name}' has no option {', '.join(repr(k) for k in unknown)} (its options: "
                          f"{', '.join(options)})")
    space = factory(**config)
    if not isinstance(space, SearchSpace):  # pragma: no cover - registry misuse
        raise ConfigError(f"space factory '{name}' returned {type(space).__name__}, not a SearchSpace")
    return space


def load_description(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Read an architecture description from a dict, a JSON file or a JSON string; check it."""
    if isinstance(source, Mapping):
        desc = dict(source)
        where = "architecture description"
    else:
        text = os.fspath(source)
        where = text
        if os.path.isfile(text):
            with open(text, encoding="utf-8") as fh:
                try:
                    desc = json.load(fh)
                except json.JSONDecodeError as exc:
                    raise FacenasError(f"{text}: not valid JSON ({exc}); expected a facenas architecture description") from None
        else:
            try:
                desc = json.loads(text)
            except json.JSONDecodeError:
                raise FacenasError(f"architecture '{text}' is neither a file nor JSON text") from None
    if not isinstance(desc, dict) or desc.get("format") != ARCH_FORMAT:
        raise FacenasError(
            f"{where}: not a facenas architecture description (expected a JSON object with "
            f"\"format\": \"{ARCH_FORMAT}\", \"space\", \"space_config\", \"sample\")"
        )
    for key in ("space", "space_config", "sample"):
        if key not in desc:
            raise FacenasError(f"{where}: architecture description lacks the field '{key}'")
    return desc


def build_from_description(source: str | os.PathLike | Mapping[str, Any]):
    """Rebuild the backbone of a saved description (``space`` + ``space_config`` + ``sample``)."""
    desc = load_description(source)
    space = create_space(desc["space"], **desc["space_config"])
    return space.build(space.validate(desc["sample"]))


def grid(space: SearchSpace, limit: int = 100_000) -> Sequence[Sample]:
    """Every sample of a small space (for tests and exhaustive baselines); bounded by ``limit``."""
    import itertools

    if space.size() > limit:
        raise FacenasError(f"space '{space.name}' has {space.size()} samples, more than the limit {limit}")
    cs = space.choices()
    return [dict(zip([c.label for c in cs], combo)) for combo in itertools.product(*[c.values for c in cs])]
