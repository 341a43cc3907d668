"""Latency of an architecture for the reward: the one latency model of the runtime package.

The space lists a network's blocks (:meth:`EnasSpace.latency_blocks`: stem, every node's op, every
skip module and factorized reduction, head); a table maps each block key to milliseconds measured
on the target device and runtime (built by ``facenas lut build --space enas`` from
:meth:`EnasSpace.all_latency_blocks`). The prediction is
:class:`~facenas.adapters.runtime.latency_model.LatencyModel`'s -- the table's corrected block
sum, as every method and ``facenas lut predict`` compute it -- and a missing block raises its
:class:`~facenas.adapters.runtime.lut.MissingLatencyEntry`.
"""
from __future__ import annotations

from typing import Any, Mapping

from facenas.adapters.runtime.latency_model import LatencyModel

__all__ = ["LatencyModel", "build_latency_model"]


def build_latency_model(spec: Mapping[str, Any] | None, space: Any) -> LatencyModel | None:
    """A latency model from a search config's ``latency`` field.

    ``{"lut": PATH}`` -- a lookup table file written by ``facenas lut build`` for this space and
    configuration; ``{"table": {key: ms, ...}}`` -- an in-line table (tests, hand-made tables);
    None -- no latency (the reward is then accuracy only).
    """
    if spec is None:
        return None
    return LatencyModel.from_spec(dict(spec), space)
