"""``random_under_flops``: uniform random search among the samples whose MFLOPs are under a bound.

Every draw comes from the strategy's seeded generator; the rejection loop is bounded
(``max_tries``) and, when nothing under the bound is found, the error gives the bound and the
smallest MFLOPs it met, so the user knows how far off the bound is.
"""
from __future__ import annotations

from typing import Any, Mapping

from facenas.nas.space import Sample, SearchSpace
from facenas.nas.strategy import STRATEGIES, RandomStrategy, SearchExhausted


class RandomUnderFlops(RandomStrategy):
    """Random search without repeats, restricted to ``space.flops(sample) <= max_mflops * 1e6``.

    Args:
        space: the space to search.
        seed: seed of the strategy's generator.
        max_mflops: the bound (``None``: no bound, plain random search).
        max_tries: draws per :meth:`ask` before giving up.
    """

    name = "random_under_flops"

    def __init__(self, space: SearchSpace, seed: int = 0, max_mflops: float | None = None, max_tries: int = 200):
        super().__init__(space, seed, max_tries=max_tries)
        self.max_mflops = None if max_mflops is None else float(max_mflops)
        self._mflops: dict[tuple, float] = {}

    def mflops(self, sample: Mapping[str, Any]) -> float:
        key = tuple(sorted(sample.items()))
        if key not in self._mflops:
            self._mflops[key] = self.space.flops(sample) / 1e6
        return self._mflops[key]

    def ask(self) -> Sample:
        if self.max_mflops is None:
            return super().ask()
        seen = {tuple(sorted(s.items())) for s, _ in self.history} | {tuple(sorted(s.items())) for s in self.pending}
        smallest = float("inf")
        for _ in range(self.max_tries):
            sample = self.space.sample(self.rng)
            key = tuple(sorted(sample.items()))
            if key in seen:
                continue
            cost = self.mflops(sample)
            smallest = min(smallest, cost)
            if cost <= self.max_mflops:
                self.pending.append(sample)
                return sample
        raise SearchExhausted(f"no unseen sample of space '{self.space.name}' under max_mflops={self.max_mflops} in "
                              f"{self.max_tries} draws ({len(seen)} already proposed; smallest unseen MFLOPs met: "
                              f"{smallest:.3f}); raise max_mflops or the budget's share of the space")


STRATEGIES.register("random_under_flops")(RandomUnderFlops)
