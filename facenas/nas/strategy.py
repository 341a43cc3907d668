"""The multi-trial strategy interface (ask / tell), its registry and a random-search reference.

A strategy proposes samples of a :class:`~facenas.nas.space.SearchSpace` and learns from
their metrics (``metrics["default"]`` is maximised, as in NNI). It is seeded and resumable through
``state_dict`` / ``load_state_dict``. The same object runs locally (:meth:`Strategy.run`) or inside
NNI's ``NasExperiment`` through :mod:`facenas.adapters.nni`.
"""
from __future__ import annotations

import abc
import copy
import logging
from typing import Any, Callable, Mapping

import numpy as np

from facenas.errors import FacenasError
from facenas.methods import method_modules
from facenas.nas.space import Sample, SearchSpace
from facenas.registry import Registry
from facenas.utils.seed import make_rng

log = logging.getLogger(__name__)

#: Strategies: random search (here) and every installed method's (``facenas.methods`` entry points).
STRATEGIES: Registry = Registry("strategy", modules=["facenas.nas.strategy"],
                                discover=lambda: method_modules("strategies"))


class SearchExhausted(FacenasError):
    """The strategy has nothing more to propose (budget reached or space exhausted)."""


class Strategy(abc.ABC):
    """Base class: subclasses implement :meth:`ask` and :meth:`tell` hooks.

    Args:
        space: the space to search.
        seed: seed of the strategy's own generator.
    """

    name = ""

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space = space
        self.seed = seed
        self.rng = make_rng(seed)
        self.history: list[tuple[Sample, dict[str, Any]]] = []

    @abc.abstractmethod
    def ask(self) -> Sample:
        """The next sample to evaluate; raise :class:`SearchExhausted` when there is none."""

    def tell(self, sample: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
        """Record the metrics of an evaluated sample (subclasses call super and learn)."""
        self.history.append((dict(sample), dict(metrics)))

    def best(self, k: int = 1) -> list[tuple[Sample, dict[str, Any]]]:
        ranked = sorted(self.history, key=lambda sm: sm[1]["default"], reverse=True)
        return ranked[:k]

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "rng": copy.deepcopy(self.rng.bit_generator.state), "history": copy.deepcopy(self.history)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seed = state["seed"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.history = [(dict(s), dict(m)) for s, m in state["history"]]

    def run(
        self,
        evaluate: Callable[[Sample], Mapping[str, Any]],
        budget: int,
        on_result: Callable[[Sample, Mapping[str, Any]], None] | None = None,
    ) -> list[tuple[Sample, dict[str, Any]]]:
        """Evaluate up to ``budget`` samples sequentially (template method); returns the history.

        A failed evaluation (exception) is logged and recorded with ``default = -inf`` so the
        search goes on. ``on_result`` is called after each evaluation (e.g. to checkpoint).
        """
        while len(self.history) < budget:
            try:
                sample = self.ask()
            except SearchExhausted:
                log.info("%s: search space exhausted after %d samples", self.name, len(self.history))
                break
            try:
                metrics = dict(evaluate(sample))
            except FacenasError:
                raise
            except Exception as exc:  # a failed trial is recorded and the search goes on
                log.warning("evaluation of %s failed: %s", sample, exc)
                metrics = {"default": float("-inf"), "error": str(exc)}
            self.tell(sample, metrics)
            if on_result is not None:
                on_result(sample, metrics)
        return self.history


class RandomStrategy(Strategy):
    """Uniform random search without repeats (when the space is small enough to exhaust).

    Samples proposed but not yet told (``pending``: several evaluations run in parallel under NNI)
    count as seen too, so parallel asks do not propose the same sample twice.
    """

    name = "random"

    def __init__(self, space: SearchSpace, seed: int = 0, max_tries: int = 1000):
        super().__init__(space, seed)
        self.max_tries = max_tries
        self.pending: list[Sample] = []

    def ask(self) -> Sample:
        seen = {tuple(sorted(s.items())) for s, _ in self.history} | {tuple(sorted(s.items())) for s in self.pending}
        if len(seen) >= self.space.size():
            raise SearchExhausted(f"all {self.space.size()} samples of space '{self.space.name}' were proposed")
        for _ in range(self.max_tries):
            sample = self.space.sample(self.rng)
            if tuple(sorted(sample.items())) not in seen:
                self.pending.append(sample)
                return sample
        raise SearchExhausted(f"no unseen sample found in {self.max_tries} draws ({len(seen)} seen)")

    def tell(self, sample: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
        super().tell(sample, metrics)
        key = tuple(sorted(sample.items()))
        for i, p in enumerate(self.pending):
            if tuple(sorted(p.items())) == key:
                del self.pending[i]
                break

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "pending": copy.deepcopy(self.pending)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.pending = [dict(s) for s in state.get("pending", [])]


STRATEGIES.register("random")(RandomStrategy)
