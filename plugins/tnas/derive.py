"""Deriving the searched architecture from the architecture distribution.

TNAS ("Optimization"): "we pick up the number of channels with the maximum probability as width
and the number of layers with the maximum probability as depth" -- the argmax architecture
(:func:`argmax_sample`, ``derive="argmax"``).

At the paper's scale (tens of thousands of architecture steps) the distributions end up peaked
and the cost loss keeps the argmax within the tolerance band. With the few hundred steps of a
CPU-scale search they stay flat enough that one step flips many argmaxes at once and the
argmax can end outside the band although the expected FLOPs sit on the target. The default
``derive="argmax_in_budget"`` therefore keeps the argmax when it is within ``(1 +- t) R`` and
otherwise moves it into the band with :func:`most_probable_in_budget`: a bounded greedy search
that changes one choice at a time, each time the change losing the least log-probability (per
FLOP moved, or outright when it lands in the band). Both the argmax and the derived
architecture are reported, so the difference is visible.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from facenas.nas.space import SearchSpace, Value

DERIVE_MODES = ("argmax", "argmax_in_budget")


def argmax_sample(space: SearchSpace, logprobs: Mapping[str, Sequence[float]]) -> dict[str, Value]:
    """Each choice's most probable candidate (first on ties)."""
    out = {}
    for c in space.choices():
        lp = list(logprobs[c.label])
        out[c.label] = c.values[max(range(len(lp)), key=lambda i: (lp[i], -i))]
    return out


def log_probability(space: SearchSpace, logprobs: Mapping[str, Sequence[float]], sample: Mapping[str, Value]) -> float:
    """``sum_label log p_label(sample[label])`` (all labels, active or not)."""
    return float(sum(logprobs[c.label][c.index(sample[c.label])] for c in space.choices()))


@dataclasses.dataclass
class Derivation:
    """A derived architecture and how it was reached."""

    sample: dict[str, Value]
    flops: int
    argmax: dict[str, Value]
    argmax_flops: int
    moves: list[dict[str, Any]]
    within: bool

    @property
    def repaired(self) -> bool:
        return bool(self.moves)


def _inside(f: float, lo: float, hi: float) -> bool:
    return lo < f < hi  # Eq. 11's open band (1 - t) R < F < (1 + t) R


def most_probable_in_budget(space: SearchSpace, logprobs: Mapping[str, Sequence[float]], start: Mapping[str, Value],
                            target: float, tolerance: float, max_moves: int = 200) -> Derivation:
    """Move ``start`` into the FLOPs band with single-choice changes that cost the least probability.

    Each move changes one label to another candidate that moves the FLOPs towards the band: a
    move landing inside the band is preferred (the most probable such move); otherwise the move
    with the smallest log-probability loss per FLOP moved that does not jump past the band.
    Stops inside the band, when no move helps, after ``max_moves`` moves, or on revisiting a sample.
    """
    lo, hi = (1.0 - tolerance) * target, (1.0 + tolerance) * target
    sample = space.validate(start)
    argmax = dict(sample)
    f = space.flops(sample)
    argmax_flops = f
    moves: list[dict[str, Any]] = []
    seen = {tuple(sample.values())}
    choices = space.choices()
    while not _inside(f, lo, hi) and len(moves) < max_moves:
        down = f >= hi
        inside_best = None
        step_best = None
        for c in choices:
            cur = c.index(sample[c.label])
            for j, value in enumerate(c.values):
                if j == cur:
                    continue
                trial = dict(sample)
                trial[c.label] = value
                f2 = space.flops(trial)
                if (down and f2 >= f) or (not down and f2 <= f) or tuple(trial.values()) in seen:
                    continue
                dlogp = float(logprobs[c.label][j] - logprobs[c.label][cur])
                if _inside(f2, lo, hi):
                    if inside_best is None or dlogp > inside_best[0]:
                        inside_best = (dlogp, c.label, value, f2)
                elif (down and f2 > lo) or (not down and f2 < hi):  # still on the same side
                    rate = dlogp / abs(f2 - f)
                    if step_best is None or rate > step_best[0]:
                        step_best = (rate, c.label, value, f2, dlogp)
        if inside_best is not None:
            dlogp, label, value, f2 = inside_best
        elif step_best is not None:
            _, label, value, f2, dlogp = step_best
        else:
            break
        moves.append({"label": label, "from": sample[label], "to": value, "mflops": f2 / 1e6, "dlogp": dlogp})
        sample[label] = value
        f = f2
        seen.add(tuple(sample.values()))
    return Derivation(dict(sample), int(f), argmax, int(argmax_flops), moves, _inside(f, lo, hi))


def derive(space: SearchSpace, logprobs: Mapping[str, Sequence[float]], target: float, tolerance: float,
           mode: str = "argmax_in_budget") -> Derivation:
    """The derived architecture under ``mode`` (see the module docstring)."""
    if mode not in DERIVE_MODES:
        raise ValueError(f"derive mode {mode!r} is not one of {DERIVE_MODES}")
    start = space.validate(argmax_sample(space, logprobs))
    if mode == "argmax":
        f = space.flops(start)
        lo, hi = (1.0 - tolerance) * target, (1.0 + tolerance) * target
        return Derivation(dict(start), f, dict(start), f, [], _inside(f, lo, hi))
    return most_probable_in_budget(space, logprobs, start, target, tolerance)
