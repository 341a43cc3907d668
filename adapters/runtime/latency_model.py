"""The one latency model: a network's predicted latency (ms) from a lookup table of its space.

Every consumer predicts latency through :class:`LatencyModel`: the ENAS reward, the OFA search's
cost and bound (:meth:`LatencyModel.additive` folds the same prediction into per-block costs for
its vectorised evolution), the NNI profiler and ``facenas lut predict|validate``. The prediction
is the table's corrected one (:meth:`~.lut.LatencyTable.predict_keys`: block sum minus per-call
overheads, then the linear correction fitted on whole networks), so a bound, a reward target and
a measured latency are all in the same milliseconds. A table without a correction (an in-line
``{key: ms}`` table, a build with ``--calibrate 0``) predicts its plain block sum.

A block the table lacks raises :class:`~.lut.MissingLatencyEntry`, the same one-line error for
every consumer; a table built for another space or space configuration is refused up front.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping

from facenas.errors import ConfigError

from .lut import LatencyTable, MissingLatencyEntry

__all__ = ["LatencyModel", "MissingLatencyEntry"]


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


class LatencyModel:
    """Predicted latency (ms) of a space's networks from a :class:`~.lut.LatencyTable`.

    Args:
        table: the lookup table (``facenas lut build``).
        space: the space being searched (default: the table's); it must be the table's space and
            configuration, and the table must hold every block of ``space.all_latency_blocks()``.
    """

    def __init__(self, table: LatencyTable, space: Any = None):
        built = table.create_space()  # a registry name (ofa_tiny) can stand for a space class's name (ofa)
        space = space if space is not None else built
        if built.name != space.name or _canonical(built.config()) != _canonical(space.config()):
            raise ConfigError(
                f"{table.source} was built for space '{table.space}' with config {_canonical(table.space_config)}, "
                f"but the network is from '{space.name}' with {_canonical(space.config())}; build a table for it with "
                f"`facenas lut build --space {space.name} --space-config '{_canonical(space.config())}' --out FILE`")
        self.table, self.space = table, space
        self.table.check_keys([b.key for b in space.all_latency_blocks()])
        self._cache: dict[str, float] = {}

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, space: Any = None) -> "LatencyModel":
        """The model of the table file ``path`` (written by ``facenas lut build``)."""
        return cls(LatencyTable.load(path), space)

    @classmethod
    def from_entries(cls, space: Any, entries: Mapping[str, float]) -> "LatencyModel":
        """An in-line table ``{block key: ms}`` (tests, hand-made tables): its prediction is the plain sum."""
        table = LatencyTable(space.name, space.config(), "in-line", 1, {}, {"statistic": "median_ms"},
                             {str(k): {"median_ms": float(v)} for k, v in entries.items()})
        return cls(table, space)

    @classmethod
    def from_spec(cls, spec: Any, space: Any) -> "LatencyModel":
        """From a config value: a table path, ``{"lut": PATH}``, ``{"table": {key: ms}}`` or a model."""
        if isinstance(spec, LatencyModel):
            return spec
        if isinstance(spec, (str, os.PathLike)):
            return cls.load(spec, space)
        if isinstance(spec, Mapping) and set(spec) == {"lut"}:
            return cls.load(str(spec["lut"]), space)
        if isinstance(spec, Mapping) and set(spec) == {"table"} and isinstance(spec["table"], Mapping):
            return cls.from_entries(space, spec["table"])
        raise ConfigError(f"latency spec {spec!r} must be {{'lut': PATH}} (a table file from `facenas lut build`) or "
                          "{'table': {block key: ms}}")

    # -- prediction ----------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.table.source

    def keys(self, sample: Mapping[str, Any]) -> list[str]:
        """The table keys of ``sample``'s blocks."""
        return [b.key for b in self.space.latency_blocks(self.space.validate(sample))]

    def predict_keys(self, keys: Iterable[str]) -> float:
        keys = list(keys)
        self.table.check_keys(keys)
        return float(self.table.predict_keys(keys))

    def predict(self, sample: Mapping[str, Any]) -> float:
        """Predicted latency (ms) of ``sample``'s network."""
        key = _canonical({k: str(v) for k, v in sample.items()})
        if key not in self._cache:
            self._cache[key] = self.predict_keys(self.keys(sample))
        return self._cache[key]

    __call__ = predict

    def block_sum(self, sample: Mapping[str, Any]) -> float:
        """The plain sum of ``sample``'s block latencies (what the correction starts from)."""
        return float(self.table.block_sum(self.keys(sample)))

    def additive(self) -> tuple[float, dict[str, float]]:
        """The prediction as ``fixed + sum of per-block costs``: ``(fixed_ms, {block key: ms})``.

        Exact for the table's correction, which is linear in per-block terms: with overhead
        ``o``, fit ``y = a + b * (sum(l) - (n - 1) o) + c * sum(w) + d * (n - 1)`` over ``n``
        blocks of latency ``l`` and weight megabytes ``w``, each block costs ``b (l - o) + c w + d``
        and the network ``a + b o - d`` on top (``b = 1``, ``a = c = d = 0`` without a fit).
        """
        t = self.table
        oh = t.latency_of(t.overhead) if t.overhead else 0.0
        cal = t.calibration or {}
        a, b = float(cal.get("offset_ms", 0.0)), float(cal.get("scale", 1.0))
        c, d = float(cal.get("per_weight_mb_ms") or 0.0), float(cal.get("per_block_ms") or 0.0)
        per = {}
        for key, rec in t.entries.items():
            if c and "weight_mb" not in rec:
                raise MissingLatencyEntry([key], t.source, t.rebuild_hint() + " (the entry has no weight_mb)")
            per[key] = b * (t.latency_of(rec) - oh) + c * float(rec.get("weight_mb", 0.0)) + d
        return a + b * oh - d, per

    def info(self) -> dict[str, Any]:
        """What the model is (stored with a search's results)."""
        t = self.table
        return {"kind": "lut", "source": t.path, "space": t.space, "runtime": t.runtime, "threads": t.threads,
                "statistic": t.statistic, "cpu": (t.device or {}).get("cpu"), "corrected": bool(t.calibration),
                "keys": len(t.entries)}
