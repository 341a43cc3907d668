"""Deriving the architecture: the argmax (the paper) and the in-budget repair of an argmax outside the band."""
from __future__ import annotations

import math

import numpy as np

from facenas.plugins.tnas.derive import argmax_sample, derive, log_probability, most_probable_in_budget


def _logprobs(space, favour_last: float, rng=None):
    out = {}
    for c in space.choices():
        z = np.zeros(len(c.values))
        z[-1] = favour_last
        if rng is not None:
            z = z + rng.normal(0, 0.1, len(z))
        out[c.label] = list(z - np.log(np.exp(z).sum()))
    return out


def test_argmax_is_the_most_probable_candidate(test_space):
    lp = _logprobs(test_space, 2.0)
    assert argmax_sample(test_space, lp) == test_space.largest()
    d = derive(test_space, lp, target=test_space.flops(test_space.largest()), tolerance=0.05, mode="argmax")
    assert d.sample == test_space.largest() and d.within and not d.repaired


def test_argmax_outside_the_band_is_moved_inside_with_the_least_probability_lost(test_space):
    rng = np.random.default_rng(0)
    lp = _logprobs(test_space, 1.0, rng)
    target = 0.5 * test_space.flops(test_space.largest())
    plain = derive(test_space, lp, target, 0.05, mode="argmax")
    assert plain.sample == test_space.largest() and not plain.within
    fixed = derive(test_space, lp, target, 0.05)
    assert fixed.within and fixed.repaired
    assert fixed.flops == test_space.flops(fixed.sample)
    assert 0.95 * target < fixed.flops < 1.05 * target
    assert fixed.argmax == plain.sample and math.isclose(fixed.argmax_flops, plain.flops)
    assert log_probability(test_space, lp, fixed.sample) < log_probability(test_space, lp, plain.sample)
    for move in fixed.moves:  # each move changes one label to a smaller candidate (the argmax was too big)
        assert move["to"] < move["from"]


def test_repair_from_below_and_already_inside(test_space):
    lp = {k: list(reversed(v)) for k, v in _logprobs(test_space, 2.0).items()}  # argmax = smallest
    small = test_space.smallest()
    assert argmax_sample(test_space, lp) == small
    target = 3 * test_space.flops(small)
    up = most_probable_in_budget(test_space, lp, small, target, 0.05)
    assert up.within and up.flops > test_space.flops(small)
    inside = most_probable_in_budget(test_space, lp, small, test_space.flops(small), 0.05)
    assert inside.sample == small and not inside.moves
