"""The ENAS controller as an ask/tell multi-trial strategy (``STRATEGIES["enas"]``).

Where the one-shot search (:mod:`.search`) scores arcs on shared weights, this strategy lets the
same LSTM policy drive a *multi-trial* search: each asked sample is trained and evaluated on its
own (e.g. an NNI trial), and the told metrics become REINFORCE rewards. Every ``batch_size`` told
results make one controller update (ENAS aggregates several arcs per update).

The reward of a told result is ``metrics["default"]``, or, when ``reward`` is given, Zhu 2019's
``arcsin(Acc x (L/T)^q)`` from ``metrics[accuracy_key]`` and ``metrics["latency_ms"]``
(:mod:`.reward`). A failed evaluation (``default = -inf``) gets the lowest reward seen so far
(0 with the arcsin reward), so the policy learns to avoid it.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Any, Mapping

from facenas.errors import ConfigError
from facenas.nas.space import Sample, SearchSpace
from facenas.nas.strategy import STRATEGIES, Strategy

from .controller import Controller, ControllerConfig, ReinforceTrainer
from .reward import RewardConfig, latency_reward

log = logging.getLogger(__name__)


class EnasStrategy(Strategy):
    """LSTM controller + REINFORCE over an ENAS space.

    Args:
        space: an ENAS space (``"enas"`` / ``"enas_test"``).
        seed: seeds the controller's weights and sampling.
        controller: :class:`~facenas.plugins.enas.controller.ControllerConfig` fields.
        batch_size: told results per controller update.
        reward: :class:`~facenas.plugins.enas.reward.RewardConfig` fields, to compute the reward
            from accuracy and latency; None = use ``metrics["default"]``.
        accuracy_key: the metric holding the accuracy in [0, 1] when ``reward`` is given.
    """

    name = "enas"

    def __init__(self, space: SearchSpace, seed: int = 0, controller: Mapping[str, Any] | None = None,
                 batch_size: int = 5, reward: Mapping[str, Any] | None = None, accuracy_key: str = "lfw_devtest_acc"):
        super().__init__(space, seed)
        if not hasattr(space, "cfg") or not hasattr(space.cfg, "skip_sources"):
            raise ConfigError(f"the 'enas' strategy drives an ENAS space's controller; space '{space.name}' is not one "
                              "(use space 'enas' / 'enas_test', or strategy 'random' for other spaces)")
        if batch_size < 1:
            raise ConfigError(f"batch_size = {batch_size} must be >= 1")
        self.controller = Controller(space, ControllerConfig.from_dict(dict(controller or {}), source="enas strategy"),
                                     seed=seed)
        self.trainer = ReinforceTrainer(self.controller)
        self.batch_size = int(batch_size)
        self.reward_cfg = RewardConfig.from_dict(dict(reward), source="enas strategy reward") if reward is not None else None
        self.accuracy_key = accuracy_key
        self.pending: list[tuple[Sample, float]] = []
        self.updates: list[dict[str, float]] = []

    def ask(self) -> Sample:
        return self.controller.sample()

    def reward_of(self, metrics: Mapping[str, Any]) -> float | None:
        """The REINFORCE reward of a told result (None for a failure, resolved in :meth:`tell`)."""
        default = float(metrics.get("default", float("-inf")))
        if not math.isfinite(default):
            return None
        if self.reward_cfg is None:
            return default
        if self.accuracy_key not in metrics:
            raise ConfigError(f"the enas strategy's reward needs metric '{self.accuracy_key}' (accuracy in [0, 1]); "
                              f"got {sorted(metrics)}; set accuracy_key")
        return latency_reward(float(metrics[self.accuracy_key]), metrics.get("latency_ms"), self.reward_cfg)

    def tell(self, sample: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
        super().tell(sample, metrics)
        reward = self.reward_of(metrics)
        if reward is None:
            seen = [r for _, r in self.pending] + [u["min_reward"] for u in self.updates]
            reward = 0.0 if self.reward_cfg is not None or not seen else min(seen)
            log.info("failed evaluation of %s gets reward %.4f", dict(sample), reward)
        self.pending.append((dict(sample), float(reward)))
        if len(self.pending) >= self.batch_size:
            samples, rewards = zip(*self.pending)
            stats = self.trainer.update(list(samples), list(rewards))
            stats["min_reward"] = min(rewards)
            self.updates.append(stats)
            self.pending = []

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "trainer": copy.deepcopy(self.trainer.state_dict()),
                "pending": copy.deepcopy(self.pending),
                "updates": copy.deepcopy(self.updates)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.trainer.load_state_dict(state["trainer"])
        self.pending = [(dict(s), float(r)) for s, r in state["pending"]]
        self.updates = [dict(u) for u in state["updates"]]


STRATEGIES.register("enas")(EnasStrategy)
