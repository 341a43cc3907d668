"""The latency-aware reward arcsin(Acc x (L/T)^q) at hand-computed points."""
from __future__ import annotations

import math

import pytest

from facenas.errors import ConfigError
from facenas.plugins.enas.reward import RewardConfig, latency_reward, reward_argument


def cfg(**kw):
    return RewardConfig.from_dict(kw)


@pytest.mark.parametrize("acc, lat, config, expected", [
    # accuracy only: arcsin(Acc)
    (0.5, None, {}, math.pi / 6),
    (1.0, None, {}, math.pi / 2),
    (0.0, 3.0, {"target_ms": 1.0}, 0.0),
    # exactly on target: (L/T)^q = 1
    (0.5, 10.0, {"target_ms": 10.0, "exponent": -1.0}, math.pi / 6),
    # twice slower than the target with q = -1: arcsin(0.5 * 2^-1) = arcsin(0.25)
    (0.5, 20.0, {"target_ms": 10.0, "exponent": -1.0}, 0.25268025514207865),
    # MnasNet's q = -0.07 at 1.5 x the target: arcsin(0.9 * 1.5^-0.07) = arcsin(0.87486...)
    (0.9, 15.0, {"target_ms": 10.0, "exponent": -0.07}, math.asin(0.9 * 1.5 ** -0.07)),
    # faster than the target with the default exponent_faster = 0: no bonus
    (0.8, 5.0, {"target_ms": 10.0, "exponent": -0.5}, math.asin(0.8)),
    # soft constraint (exponent_faster = -0.07): twice faster earns 0.8 * 2^0.07 = 0.83937...
    (0.8, 5.0, {"target_ms": 10.0, "exponent_faster": -0.07}, math.asin(0.8 * 2 ** 0.07)),
    # ... and a bonus pushing the argument past 1 is clipped to arcsin(1) = pi/2
    (0.99, 1.0, {"target_ms": 10.0, "exponent_faster": -0.5}, math.pi / 2),
])
def test_reward_values(acc, lat, config, expected):
    assert latency_reward(acc, lat, cfg(**config)) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_hand_computed_numbers():
    # arcsin(0.25) = 0.252680255142..., arcsin(0.5) = 0.523598775598...
    assert latency_reward(0.5, 20.0, cfg(target_ms=10.0, exponent=-1.0)) == pytest.approx(0.2526802551420786)
    assert latency_reward(0.5, 10.0, cfg(target_ms=10.0, exponent=-1.0)) == pytest.approx(0.5235987755982988)


def test_slower_lowers_and_clip_is_reported():
    c = cfg(target_ms=10.0, exponent=-0.3)
    values = [latency_reward(0.7, lat, c) for lat in (5.0, 10.0, 12.0, 20.0, 40.0)]
    assert values[0] == values[1]  # no bonus under the target
    assert values[1] > values[2] > values[3] > values[4]
    assert reward_argument(0.99, 1.0, cfg(target_ms=10.0, exponent_faster=-0.5)) == (1.0, True)
    assert reward_argument(0.5, 20.0, cfg(target_ms=10.0, exponent=-1.0)) == (0.25, False)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="must be <= 0"):
        cfg(target_ms=10.0, exponent=0.07)
    with pytest.raises(ConfigError, match="target_ms"):
        cfg(target_ms=0.0)
    with pytest.raises(ValueError, match="accuracy"):
        latency_reward(1.2, None, cfg())
    with pytest.raises(ValueError, match="latency"):
        latency_reward(0.5, None, cfg(target_ms=1.0))
    with pytest.raises(ValueError, match="latency"):
        latency_reward(0.5, -1.0, cfg(target_ms=1.0))
