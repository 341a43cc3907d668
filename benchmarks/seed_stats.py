"""Statistics over seeds and the verdict rule of issue 16's headline comparisons.

A comparison is a searched network against a hand-designed reference on one runtime, each side the
LFW accuracies of its seed runs (one value per seed). :func:`verdict` applies the rule:

* ``better``: the mean gain is >= +1 point LFW (0.01) and Welch's t-test gives p < 0.05;
* ``as accurate, faster``: the searched mean is within 0.5 point of the reference's (>= ref - 0.005)
  and its measured latency on that runtime is <= 0.75x the reference's;
* ``worse``: p < 0.05 and the searched mean is lower;
* ``tie``: otherwise;

checked in that order, and only with >= 3 seeds on each side: with fewer the verdict is
``n<3: not a headline`` and the numbers it has (gain, p where both sides have >= 2 seeds) are still
given. :func:`compare` picks the references a searched network is compared with: every reference
whose latency on the runtime is >= the searched network's (as one timing run measured both, side by
side, where one did; else each network's own measurement); it reports the comparison with the
fastest of those (the closest in latency) and the strongest one (best verdict, then largest gain),
and names the faster references that are at least as accurate (the searched network is dominated).

Pure functions over numbers (scipy for the t distribution); no records, no files.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

#: seeds per side a headline verdict needs
MIN_SEEDS = 3
#: "better": mean gain of at least one LFW point ...
BETTER_GAIN = 0.01
#: ... at this significance (Welch's t-test, two-sided)
ALPHA = 0.05
#: "as accurate": the searched mean at most half a point below the reference's ...
AS_ACCURATE_WITHIN = 0.005
#: ... "faster": at most this fraction of the reference's latency
FASTER_RATIO = 0.75
#: float slack on the thresholds (0.86 - 0.85 is 0.01 up to rounding)
EPS = 1e-9

BETTER, AS_ACCURATE_FASTER, WORSE, TIE = "better", "as accurate, faster", "worse", "tie"
FEW_SEEDS = f"n<{MIN_SEEDS}: not a headline"
#: how strong a claim each verdict makes for the searched network (the strongest comparison is the highest)
STRENGTH = {BETTER: 3, AS_ACCURATE_FASTER: 2, TIE: 1, WORSE: 0, FEW_SEEDS: -1}


@dataclasses.dataclass(frozen=True)
class SeedStats:
    """Values over seeds: their count, mean and sample standard deviation (ddof 1; None below 2 values)."""

    values: tuple[float, ...]
    n: int
    mean: float | None
    std: float | None


def seed_stats(values: Sequence[float]) -> SeedStats:
    """Mean and sample std (n - 1 in the denominator) of ``values``."""
    vals = tuple(float(v) for v in values)
    n = len(vals)
    if n == 0:
        return SeedStats(vals, 0, None, None)
    mean = math.fsum(vals) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1)) if n >= 2 else None
    return SeedStats(vals, n, mean, std)


@dataclasses.dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t-test of ``a`` vs ``b``: t statistic, degrees of freedom, two-sided p
    (``p`` None when undefined: both sides without spread)."""

    t: float | None
    df: float | None
    p: float | None


def welch(a: Sequence[float], b: Sequence[float]) -> Welch | None:
    """Welch's t-test (``scipy.stats.ttest_ind(a, b, equal_var=False)``); None when a side has < 2 values."""
    if len(a) < 2 or len(b) < 2:
        return None
    sa, sb = seed_stats(a), seed_stats(b)
    va, vb = sa.std ** 2 / sa.n, sb.std ** 2 / sb.n
    if va + vb == 0.0:  # no spread on either side: the statistic is undefined
        return Welch(None, None, None)
    from scipy import stats

    res = stats.ttest_ind(list(a), list(b), equal_var=False)
    return Welch(float(res.statistic), float(res.df), float(res.pvalue))


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One comparison on one runtime: searched vs reference accuracies over seeds and latencies."""

    label: str
    searched: SeedStats
    reference: SeedStats
    gain: float | None  # searched mean - reference mean (LFW accuracy, 0.01 = one point)
    p: float | None  # Welch's two-sided p (None: a side has < 2 seeds, or neither has spread)
    latency_ratio: float | None  # searched latency / reference latency on the runtime
    reason: str  # which rule gave the label, with its numbers
    side_by_side: bool = False  # the latencies come from one timing run (same interleaved rounds)


def verdict(searched: Sequence[float], reference: Sequence[float], searched_latency_ms: float | None,
            reference_latency_ms: float | None, side_by_side: bool = False) -> Verdict:
    """The issue's rule (module docstring) for ``searched`` vs ``reference`` LFW accuracies over seeds
    (``side_by_side``: both latencies were measured in one timing run, which the reason then says)."""
    s, r = seed_stats(searched), seed_stats(reference)
    gain = s.mean - r.mean if s.n and r.n else None
    test = welch(searched, reference)
    p = test.p if test else None
    ratio = (searched_latency_ms / reference_latency_ms
             if isinstance(searched_latency_ms, (int, float)) and isinstance(reference_latency_ms, (int, float))
             and reference_latency_ms > 0 else None)

    timed = " (side by side)" if side_by_side and ratio is not None else ""

    def made(label: str, reason: str) -> Verdict:
        return Verdict(label, s, r, gain, p, ratio, reason, side_by_side and ratio is not None)

    if s.n < MIN_SEEDS or r.n < MIN_SEEDS:
        return made(FEW_SEEDS, f"{s.n} searched and {r.n} reference seed(s); a headline needs >= {MIN_SEEDS} each")
    significant = p is not None and p < ALPHA
    if gain >= BETTER_GAIN - EPS and significant:
        return made(BETTER, f"gain {gain:+.4f} >= +{BETTER_GAIN} and p {p:.3g} < {ALPHA}")
    if gain >= -AS_ACCURATE_WITHIN - EPS and ratio is not None and ratio <= FASTER_RATIO + EPS:
        return made(AS_ACCURATE_FASTER, f"gain {gain:+.4f} >= -{AS_ACCURATE_WITHIN} at {ratio:.2f}x the latency"
                                        f"{timed} (<= {FASTER_RATIO}x)")
    if significant and gain < 0:
        return made(WORSE, f"gain {gain:+.4f} < 0 and p {p:.3g} < {ALPHA}")
    why = "p undefined (no spread)" if p is None else f"p {p:.3g}"
    return made(TIE, f"gain {gain:+.4f}, {why}" + ("" if ratio is None else f", {ratio:.2f}x the latency{timed}"))


@dataclasses.dataclass(frozen=True)
class Side:
    """One network on one runtime: its LFW accuracy per seed and its measured latency there."""

    accuracies: tuple[float, ...]
    latency_ms: float | None


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A searched network against the references on one runtime (:func:`compare`)."""

    eligible: dict[str, Verdict]  # reference name -> verdict, every reference at least as slow
    closest: str | None  # the fastest eligible reference (closest in latency)
    strongest: str | None  # the eligible reference giving the strongest verdict (then the largest gain)
    dominated_by: tuple[str, ...]  # faster references at least as accurate (mean over seeds)
    note: str  # why there is no comparison, when there is none

    def verdict(self, which: str) -> Verdict | None:
        name = getattr(self, which)
        return self.eligible[name] if name is not None else None


def compare(searched: Side, references: Mapping[str, Side],
            side_by_side: Mapping[str, tuple[float, float]] | None = None) -> Comparison:
    """``searched`` against every reference at least as slow on the runtime (latency >= its own).

    ``side_by_side``: ``{reference: (searched ms, reference ms)}`` measured in one timing run; for those
    references that pair decides which is slower and gives the latency ratio, since latencies timed in
    separate runs of a shared machine differ by more than the 0.75x rule can tell apart. The others
    compare the two ``latency_ms`` (each network's own timing runs)."""
    pairs = dict(side_by_side or {})
    if not searched.accuracies or (not isinstance(searched.latency_ms, (int, float)) and not pairs):
        return Comparison({}, None, None, (),
                          "the searched network has no measured latency or accuracy on this runtime")
    timed: dict[str, tuple[float, float, bool]] = {}  # reference -> (searched ms, reference ms, side by side)
    for k, v in references.items():
        if not v.accuracies:
            continue
        if k in pairs:
            timed[k] = (float(pairs[k][0]), float(pairs[k][1]), True)
        elif isinstance(v.latency_ms, (int, float)) and isinstance(searched.latency_ms, (int, float)):
            timed[k] = (float(searched.latency_ms), float(v.latency_ms), False)
    by_ratio = sorted(timed.items(), key=lambda kv: -kv[1][0] / kv[1][1])  # the closest in latency first
    eligible = {k: verdict(searched.accuracies, references[k].accuracies, s_ms, r_ms, sbs)
                for k, (s_ms, r_ms, sbs) in by_ratio if r_ms >= s_ms}
    mean = seed_stats(searched.accuracies).mean
    dominated = tuple(k for k, (s_ms, r_ms, _) in by_ratio
                      if r_ms < s_ms and seed_stats(references[k].accuracies).mean >= mean - EPS)
    if not eligible:
        return Comparison({}, None, None, dominated, "no reference is as slow or slower on this runtime")
    closest = next(iter(eligible))  # the highest latency ratio: the fastest reference at least as slow
    strongest = max(eligible, key=lambda k: (STRENGTH[eligible[k].label], eligible[k].gain))
    return Comparison(eligible, closest, strongest, dominated, "")
