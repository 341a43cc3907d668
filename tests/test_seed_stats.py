"""benchmarks/seed_stats.py: statistics over seeds, Welch's t-test and issue 16's verdict rule."""
from __future__ import annotations

import math

import pytest

from benchmarks.seed_stats import (AS_ACCURATE_FASTER, BETTER, FEW_SEEDS, TIE, WORSE, Side, compare, seed_stats,
                                   verdict, welch)


def test_seed_stats_is_mean_and_sample_std():
    s = seed_stats([0.80, 0.82, 0.84])
    assert s.n == 3 and s.mean == pytest.approx(0.82) and s.std == pytest.approx(0.02)  # ddof 1, not 0.01633
    one = seed_stats([0.8])
    assert (one.n, one.mean, one.std) == (1, 0.8, None)
    assert seed_stats([]).mean is None


def test_welch_matches_the_closed_form_for_four_degrees_of_freedom():
    # equal spread, 3 values each: Welch's df is exactly 4, where the t distribution has a closed form
    w = welch([0.80, 0.81, 0.82], [0.83, 0.84, 0.85])
    t = -0.03 / math.sqrt(2 * 1e-4 / 3)
    x = t * t / 4
    p = 1 - 0.75 * (abs(t) / math.sqrt(1 + x)) * (1 - x / (3 * (1 + x)))  # 2 * (1 - F_4(|t|))
    assert w.t == pytest.approx(t, rel=1e-9) and w.df == pytest.approx(4.0, rel=1e-9)
    assert w.p == pytest.approx(p, rel=1e-9) and w.p == pytest.approx(0.021312, abs=1e-6)


def test_welch_unequal_variances_uses_the_welch_satterthwaite_df():
    w = welch([1.0, 2.0, 3.0], [1.0, 3.0, 5.0, 7.0, 9.0])  # variances 1 and 10
    assert w.t == pytest.approx(-3 / math.sqrt(1 / 3 + 2), rel=1e-9)
    assert w.df == pytest.approx(98 / 19, rel=1e-9)  # (1/3 + 2)^2 / ((1/3)^2 / 2 + 2^2 / 4)
    assert 0.05 < w.p < 0.2
    assert welch([1.0], [1.0, 2.0]) is None  # a side without spread estimate
    assert welch([1.0, 1.0], [2.0, 2.0]).p is None  # no spread on either side: undefined, not 0


A = [0.850, 0.852, 0.848]  # reference: mean 0.850, std 0.002


def _shift(values, d):
    return [v + d for v in values]


@pytest.mark.parametrize("searched, s_ms, r_ms, label", [
    (_shift(A, 0.010), 1.0, 1.0, BETTER),  # exactly +1 point, p << 0.05
    (_shift(A, 0.0099), 1.0, 1.0, TIE),  # significant but under one point
    ([0.80, 0.90, 0.88], 1.0, 1.0, TIE),  # +2.7 points but p > 0.05
    (_shift(A, -0.005), 0.75, 1.0, AS_ACCURATE_FASTER),  # half a point lower at exactly 0.75x
    (_shift(A, -0.005), 0.76, 1.0, WORSE),  # 0.76x is not faster enough; lower and p < 0.05
    (_shift(A, -0.0051), 0.5, 1.0, WORSE),  # more than half a point lower
    (_shift(A, -0.004), 0.7, 1.0, AS_ACCURATE_FASTER),  # lower with p < 0.05 yet within half a point, faster
    ([0.80, 0.84, 0.87], 0.5, 1.0, TIE),  # 1.3 points lower, not significant, much faster
    (_shift(A, 0.0), None, 1.0, TIE),  # no latency: only the accuracy rules apply
    (_shift(A, 0.02), 2.0, 1.0, BETTER),  # better regardless of latency
])
def test_verdict_rule(searched, s_ms, r_ms, label):
    v = verdict(searched, A, s_ms, r_ms)
    assert v.label == label, v.reason
    assert v.searched.n == v.reference.n == 3


def test_verdict_needs_three_seeds_a_side_and_still_gives_its_numbers():
    v = verdict([0.87, 0.871], A, 0.5, 1.0)
    assert v.label == FEW_SEEDS == "n<3: not a headline"
    assert v.gain == pytest.approx(0.0205) and v.p is not None and v.latency_ratio == 0.5
    one = verdict([0.87], A, 1.0, 1.0)
    assert one.label == FEW_SEEDS and one.p is None and one.gain == pytest.approx(0.02)
    assert verdict(_shift(A, 0.02), A[:2], 1.0, 1.0).label == FEW_SEEDS  # the reference side counts too


def test_compare_takes_every_reference_at_least_as_slow():
    refs = {"fast": Side((0.86, 0.861, 0.859), 0.5),  # faster and more accurate: dominates
            "same": Side(tuple(A), 1.0),  # equal latency: eligible, the closest
            "slow_weak": Side((0.830, 0.832, 0.828), 2.0),  # the searched net beats it
            "slow_strong": Side((0.90, 0.901, 0.899), 3.0),
            "untimed": Side((0.5, 0.5, 0.5), None)}
    c = compare(Side(tuple(_shift(A, 0.005)), 1.0), refs)
    assert list(c.eligible) == ["same", "slow_weak", "slow_strong"]  # by latency; none faster, none untimed
    assert c.closest == "same" and c.verdict("closest").label == TIE
    assert c.strongest == "slow_weak" and c.verdict("strongest").label == BETTER
    assert c.dominated_by == ("fast",)
    none = compare(Side(tuple(A), 5.0), refs)
    assert none.eligible == {} and none.closest is None and "no reference is as slow" in none.note
    assert none.dominated_by == ("fast", "same", "slow_strong")  # faster and at least as accurate
    assert "no measured latency" in compare(Side(tuple(A), None), refs).note


def test_a_side_by_side_timing_decides_over_separate_runs():
    # separately timed, the searched network (1.0 ms) looks faster than `ref` (1.1 ms) but not 0.75x; timed side
    # by side in one run it is 0.70x, so "as accurate, faster" -- and it is the ratio the verdict reports
    refs = {"ref": Side(tuple(A), 1.1), "other": Side(tuple(A), 0.9)}
    searched = Side(tuple(_shift(A, -0.002)), 1.0)
    apart = compare(searched, refs)
    assert list(apart.eligible) == ["ref"] and apart.verdict("closest").label == TIE
    assert not apart.verdict("closest").side_by_side and apart.dominated_by == ("other",)
    together = compare(searched, refs, {"ref": (0.70, 1.0), "other": (0.8, 0.95)})
    v = together.verdict("closest")
    assert set(together.eligible) == {"ref", "other"} and together.closest == "other"  # 0.84x is the closer one
    assert together.eligible["ref"].label == AS_ACCURATE_FASTER and together.eligible["ref"].side_by_side
    assert together.eligible["ref"].latency_ratio == pytest.approx(0.70) and "(side by side)" in \
        together.eligible["ref"].reason
    assert v.label == TIE and together.strongest == "ref" and together.dominated_by == ()
    # a pair saying the reference is the faster one makes it dominate, whatever the separate runs said
    flipped = compare(searched, refs, {"ref": (1.0, 0.85)})
    assert flipped.dominated_by == ("ref", "other") and "ref" not in flipped.eligible  # the fastest first
    # a pair is enough without the searched network's own latency
    assert compare(Side(tuple(A), None), refs, {"ref": (0.5, 1.0)}).closest == "ref"
