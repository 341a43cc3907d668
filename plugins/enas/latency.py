"""Latency of an architecture for the reward: the sum of its blocks' latencies from a lookup table.

The space lists a network's blocks (:meth:`EnasSpace.latency_blocks`: stem, every node's op, every
skip module and factorized reduction, head); a table maps each block key to milliseconds measured
on the target device and runtime (built by ``facenas lut build --space enas`` from
:meth:`EnasSpace.all_latency_blocks`). The predicted latency of an arc is the sum over its blocks,
as MnasNet / OFA / ProxylessNAS predict latency.
"""
from __future__ import annotations

import abc
from typing import Any, Mapping

from facenas.errors import ConfigError, FacenasError


class LatencyModel(abc.ABC):
    """Maps a sample of a space to its latency in milliseconds."""

    @abc.abstractmethod
    def __call__(self, sample: Mapping[str, Any]) -> float:
        """Latency of ``sample``'s network in ms."""

    def info(self) -> dict[str, Any]:
        """What the model is (stored with the search's results)."""
        return {"kind": type(self).__name__}


class TableLatency(LatencyModel):
    """Sum of per-block latencies from ``{block key: ms}``.

    Args:
        space: the space whose :meth:`latency_blocks` name the keys.
        table: block key -> latency in ms; must hold every key of ``space.all_latency_blocks()``.
        source: where the table came from (for messages and :meth:`info`).
        meta: device / runtime metadata of the table.
    """

    def __init__(self, space: Any, table: Mapping[str, float], source: str = "latency table",
                 meta: Mapping[str, Any] | None = None):
        self.space = space
        self.table = {str(k): float(v) for k, v in table.items()}
        self.source = source
        self.meta = dict(meta or {})
        needed = {b.key for b in space.all_latency_blocks()}
        missing = sorted(needed - set(self.table))
        if missing:
            raise FacenasError(
                f"{source} lacks {len(missing)} of the {len(needed)} block keys space '{space.name}' needs "
                f"(first: {missing[:5]}); build a table for this space configuration with "
                f"`facenas lut build --space {space.name}` and the same space config")
        self._cache: dict[tuple, float] = {}

    def __call__(self, sample: Mapping[str, Any]) -> float:
        key = tuple(sorted((k, str(v)) for k, v in sample.items()))
        if key not in self._cache:
            self._cache[key] = sum(self.table[b.key] for b in self.space.latency_blocks(sample))
        return self._cache[key]

    def info(self) -> dict[str, Any]:
        return {"kind": "table", "source": self.source, "keys": len(self.table), **self.meta}


class LutLatency(LatencyModel):
    """Latency predicted by a lookup table of the runtime package (``facenas lut build``).

    Uses the table's corrected prediction (block sum minus per-call overheads, then the linear
    correction fitted on whole networks); see :mod:`facenas.adapters.runtime.lut`.

    Args:
        space: the space being searched; must be the table's space and configuration.
        table: a :class:`facenas.adapters.runtime.lut.LatencyTable`.
    """

    def __init__(self, space: Any, table: Any):
        self.space = space
        self.table = table
        source = table.path or "latency table"
        if table.space != space.name or _canonical(table.space_config) != _canonical(space.config()):
            raise FacenasError(
                f"{source} was built for space '{table.space}' with config {table.space_config}, but the search uses "
                f"'{space.name}' with {space.config()}; build a table for this configuration with `facenas lut build "
                f"--space {space.name} --space-config '{_canonical(space.config())}'`")
        missing = table.check_space(space)
        if missing:
            from facenas.adapters.runtime.lut import MissingKeysError

            raise MissingKeysError(missing, source)
        self._cache: dict[tuple, float] = {}

    def __call__(self, sample: Mapping[str, Any]) -> float:
        key = tuple(sorted((k, str(v)) for k, v in sample.items()))
        if key not in self._cache:
            self._cache[key] = float(self.table.predict(sample, self.space))
        return self._cache[key]

    def info(self) -> dict[str, Any]:
        return {"kind": "lut", "source": self.table.path, "runtime": self.table.runtime,
                "threads": self.table.threads, "statistic": self.table.statistic,
                "cpu": (self.table.device or {}).get("cpu"), "calibration": self.table.calibration}


def _canonical(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


def build_latency_model(spec: Mapping[str, Any] | None, space: Any) -> LatencyModel | None:
    """A latency model from a search config's ``latency`` field.

    ``{"lut": PATH}`` -- a lookup table file written by ``facenas lut build`` for this space and
    configuration; ``{"table": {key: ms, ...}}`` -- an in-line table (tests, hand-made tables);
    None -- no latency (the reward is then accuracy only).
    """
    if spec is None:
        return None
    spec = dict(spec)
    if "table" in spec:
        return TableLatency(space, spec["table"], source="in-line latency table")
    if "lut" in spec:
        from facenas.adapters.runtime.lut import LatencyTable

        return LutLatency(space, LatencyTable.load(str(spec["lut"])))
    raise ConfigError(f"latency spec {spec} must have 'lut' (a table file from `facenas lut build`) or 'table' "
                      "(a {block key: ms} mapping)")
