"""Random arcs of matching latency: the control the searched architectures are compared against.

For each given (searched) architecture, :func:`draw_matching_arcs` draws uniformly random arcs of
its ENAS space (every decision uniform, :meth:`SearchSpace.sample`) until one's predicted latency
is within ``tolerance`` (relative, default +-10 %) of the searched arc's. The prediction is
:class:`~facenas.adapters.runtime.latency_model.LatencyModel`'s -- the model the ENAS reward uses --
from the same table, so "matching latency" is in the search's own milliseconds; each random arc
is retrained with the same recipe as the searched one (``enas.retrain``) and timed in the
runtimes (``runtime.latency``).

Seeded: arc ``i`` (1-based) draws from ``numpy.random.default_rng([seed, i])``, so each arc
depends only on the seed, its index and its target, not on how many draws the others took. An arc
equal to a searched one or to an earlier random one is skipped (it still counts as a draw). When
no arc matches within ``max_draws`` draws, :class:`~facenas.errors.ConfigError` says so in one line
with the latency range the draws covered.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from facenas.config import TypedConfig
from facenas.errors import ConfigError
from facenas.nas.results import arch_entry, with_architectures
from facenas.nas.space import create_space, load_description

from .latency import build_latency_model

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RandomArcsConfig(TypedConfig):
    """Settings of :func:`draw_matching_arcs` (the ``enas.random_arcs`` stage's parameters besides
    ``architectures``).

    Args:
        latency: the latency model's spec: ``{"lut": PATH}`` (a ``facenas lut build`` /
            ``runtime.lut`` table of the arcs' space) or ``{"table": {block key: ms}}``.
        tolerance: a random arc matches when ``|L_random / L_searched - 1| <= tolerance``.
        max_draws: draws per searched arc before giving up.
        seed: seeds the draws (arc ``i`` uses ``default_rng([seed, i])``).
    """

    latency: dict[str, Any] = dataclasses.field(default_factory=dict)
    tolerance: float = 0.1
    max_draws: int = 10_000
    seed: int = 0

    def check(self, source: str) -> None:
        if not self.latency:
            raise ConfigError(f"{source}: 'latency' is required: {{'lut': PATH}} (the table the search's reward "
                              "used, e.g. \"${lut.result.table}\") or {'table': {block key: ms}}")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"{source}: tolerance = {self.tolerance} must be in (0, 1) (0.1 = +-10 %)")
        if self.max_draws < 1:
            raise ConfigError(f"{source}: max_draws = {self.max_draws} must be >= 1")


def _description(entry: Any, where: str) -> dict[str, Any]:
    """The ``facenas.arch/1`` description of an ``architectures`` entry (``{"arch": ...}``), a description or its path."""
    if isinstance(entry, Mapping) and "arch" in entry and "format" not in entry:
        entry = entry["arch"]
    if not isinstance(entry, (Mapping, str)):
        raise ConfigError(f"{where}: expected an architecture (an entry of a search's 'architectures', a "
                          f"facenas.arch/1 description or its path), got {type(entry).__name__}")
    return load_description(entry)


def draw_matching_arcs(architectures: Sequence[Any], config: RandomArcsConfig,
                       out_dir: str | Path | None = None) -> dict[str, Any]:
    """For each of ``architectures`` (best first), a uniformly random arc of its space within
    ``config.tolerance`` of its predicted latency.

    Returns ``{"architectures": [...], "arch", "arch_path", "tolerance", "seed", "draws", "default"}``
    (:mod:`facenas.nas.results` shapes): each entry ``{"sample", "arch", "arch_path", "latency_ms",
    "target_latency_ms", "relative_difference", "draws", "matches"}`` -- ``matches`` is the 1-based
    rank of the searched arc it stands against, ``draws`` how many random arcs were drawn for it.
    Each description is written to ``out_dir/random<i>_arch.json`` (``out_dir`` None: not written,
    ``arch_path`` empty).
    """
    config.check("enas.random_arcs")
    if not architectures:
        raise ConfigError("enas.random_arcs: 'architectures' is empty; give the search's architectures "
                          "(\"${search.result.architectures}\")")
    descs = [_description(a, f"enas.random_arcs architectures[{i}]") for i, a in enumerate(architectures)]
    models: dict[str, tuple[Any, Any]] = {}  # one space and latency model per (space, config)
    taken = {json.dumps(d["sample"], sort_keys=True) for d in descs}
    entries = []
    for i, desc in enumerate(descs, 1):
        key = json.dumps([desc["space"], desc["space_config"]], sort_keys=True)
        if key not in models:
            space = create_space(desc["space"], **desc["space_config"])
            models[key] = (space, build_latency_model(config.latency, space))
        space, model = models[key]
        target = float(model(desc["sample"]))
        rng = np.random.default_rng([int(config.seed), i])
        low = high = None
        for draw in range(1, int(config.max_draws) + 1):
            sample = space.sample(rng)
            lat = float(model(sample))
            low, high = (lat, lat) if low is None else (min(low, lat), max(high, lat))
            text = json.dumps(space.validate(sample), sort_keys=True)
            if abs(lat / target - 1.0) <= config.tolerance and text not in taken:
                break
        else:
            raise ConfigError(
                f"enas.random_arcs: no random arc of space '{desc['space']}' within +-{config.tolerance:.0%} of "
                f"architecture {i}'s predicted {target:.4f} ms in max_draws={config.max_draws} draws (the draws "
                f"predicted {low:.4f}-{high:.4f} ms); raise max_draws or tolerance")
        taken.add(text)
        extra = {"latency_ms": lat, "target_latency_ms": target, "relative_difference": lat / target - 1.0,
                 "draws": draw, "matches": i}
        described = space.describe(sample)
        if out_dir is not None:
            entries.append(arch_entry(described, Path(out_dir) / f"random{i}_arch.json", **extra))
        else:
            entries.append({"sample": dict(described["sample"]), "arch": described, "arch_path": "", **extra})
        log.info("random arc %d: %.4f ms predicted vs searched arc %d's %.4f ms (%+.1f %%), %d draw(s)",
                 i, lat, i, target, 100 * (lat / target - 1.0), draw)
    metrics = {"tolerance": float(config.tolerance), "seed": int(config.seed), "max_draws": int(config.max_draws),
               "draws": sum(e["draws"] for e in entries),
               # the pipeline's own measure of this auxiliary step: the largest relative latency difference
               "default": max(abs(e["relative_difference"]) for e in entries)}
    return with_architectures(metrics, entries)


__all__ = ["RandomArcsConfig", "draw_matching_arcs"]
