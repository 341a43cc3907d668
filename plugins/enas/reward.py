"""The latency-aware reward of Zhu 2019, Eq. 5, made well defined.

Eq. 5 maximises ``arcsin(Acc(m) x [Latency(m) / Target]^q)`` (after MnasNet's
``ACC x (LAT/T)^w``). As printed it leaves open the sign of ``q`` and lets the argument leave
arcsin's domain. facenas defines it as

    R(m) = arcsin( Acc(m) x (L(m) / T)^e ),   e = q        if L(m) > T   (slower than the target)
                                              e = q_fast   if L(m) <= T  (at or under the target)

with ``Acc`` in [0, 1], ``q <= 0`` (so a network slower than the target is penalised: ``L/T > 1``
raised to a negative power is below 1) and ``q_fast <= 0`` (0, the default, gives no bonus for
being faster than needed -- MnasNet's "hard" variant with a soft penalty; ``q_fast = q`` is
MnasNet's soft constraint). With ``q_fast = 0`` the argument is at most ``Acc <= 1``; with
``q_fast < 0`` a fast network can push it above 1, where it is clipped to 1 (``arcsin(1) = pi/2``)
and :func:`reward_argument` says so. Without a target (``T = None``) the reward is ``arcsin(Acc)``.

arcsin is steepest near 1, so the last points of accuracy earn the most reward (Sec. 3.2).
"""
from __future__ import annotations

import dataclasses
import math

from facenas.config import TypedConfig
from facenas.errors import ConfigError


@dataclasses.dataclass
class RewardConfig(TypedConfig):
    """Parameters of the reward.

    Attributes:
        target_ms: the target latency T in milliseconds (None: accuracy only).
        exponent: q, the exponent when the network is slower than the target (<= 0).
        exponent_faster: the exponent when it is at or under the target (<= 0; 0 = no bonus).
    """

    target_ms: float | None = None
    exponent: float = -0.07
    exponent_faster: float = 0.0

    def check(self, source: str) -> None:
        if self.target_ms is not None and not self.target_ms > 0:
            raise ConfigError(f"{source}: target_ms = {self.target_ms} must be > 0 (or None for accuracy only)")
        for name in ("exponent", "exponent_faster"):
            if getattr(self, name) > 0:
                raise ConfigError(
                    f"{source}: {name} = {getattr(self, name)} must be <= 0: the reward multiplies accuracy by "
                    f"(latency/target)^q, and a network slower than the target (ratio > 1) must score lower, "
                    f"which needs q < 0 (MnasNet uses -0.07); use e.g. {name}={-abs(getattr(self, name))}")


def reward_argument(accuracy: float, latency_ms: float | None, config: RewardConfig) -> tuple[float, bool]:
    """``(Acc x (L/T)^e, clipped)``: the argument of arcsin, clipped to 1 (and whether it was)."""
    acc = float(accuracy)
    if not (0.0 <= acc <= 1.0) or math.isnan(acc):
        raise ValueError(f"accuracy {accuracy!r} is not in [0, 1]")
    if config.target_ms is None:
        return acc, False
    if latency_ms is None or not float(latency_ms) > 0 or not math.isfinite(float(latency_ms)):
        raise ValueError(f"latency {latency_ms!r} ms must be a positive finite number when target_ms is set")
    ratio = float(latency_ms) / config.target_ms
    exponent = config.exponent if ratio > 1.0 else config.exponent_faster
    value = acc * ratio ** exponent
    if value > 1.0:
        return 1.0, True
    return value, False


def latency_reward(accuracy: float, latency_ms: float | None, config: RewardConfig) -> float:
    """Zhu 2019 Eq. 5 as defined in the module docstring: ``arcsin(Acc x (L/T)^e)`` in [0, pi/2]."""
    value, _ = reward_argument(accuracy, latency_ms, config)
    return math.asin(value)
