"""The controller as an ask/tell strategy: registered, learns a toy objective, resumes exactly."""
from __future__ import annotations

import math

import numpy as np
import pytest

from facenas.errors import ConfigError
from facenas.nas.space import create_space
from facenas.nas.strategy import STRATEGIES


def _objective(target):
    def evaluate(sample):
        return {"default": sum(sample[k] == v for k, v in target.items()) / len(target)}
    return evaluate


def test_registered_and_rejects_other_spaces():
    assert "enas" in STRATEGIES.names()
    with pytest.raises(ConfigError, match="ENAS space"):
        STRATEGIES.create("enas", space=create_space("toy"))


def test_run_learns_a_toy_objective():
    space = create_space("enas", num_cells=2, num_nodes=2, channels=4, stem_stride=1, reductions=[1], input_size=8,
                         embedding_size=4, ops=["sep_conv_3x3", "max_pool_3x3"])
    target = space.sample(np.random.default_rng(7))
    strategy = STRATEGIES.create("enas", space=space, seed=0, batch_size=8, controller={"lr": 0.01})
    history = strategy.run(_objective(target), budget=640)
    scores = [m["default"] for _, m in history]
    assert len(strategy.updates) == 80
    assert np.mean(scores[-80:]) > np.mean(scores[:80]) + 0.1
    assert strategy.best()[0][1]["default"] == max(scores)


def test_failed_evaluations_are_recorded_and_resume_is_exact():
    space = create_space("enas_test")
    target = space.sample(np.random.default_rng(1))
    ok = _objective(target)

    def flaky(sample):
        if sample["cell1/node1/op"] in ("max_pool_3x3", "avg_pool_3x3"):
            raise RuntimeError("out of memory (injected)")
        return ok(sample)

    a = STRATEGIES.create("enas", space=space, seed=3, batch_size=4)
    a.run(flaky, budget=10)
    assert any(math.isinf(m["default"]) for _, m in a.history)
    state = a.state_dict()
    rest_a = a.run(flaky, budget=30)[10:]

    b = STRATEGIES.create("enas", space=space, seed=42, batch_size=4)
    b.load_state_dict(state)
    rest_b = b.run(flaky, budget=30)[10:]
    assert [s for s, _ in rest_a] == [s for s, _ in rest_b]
    assert a.updates == b.updates


def test_reward_from_accuracy_and_latency():
    space = create_space("enas_test")
    strategy = STRATEGIES.create("enas", space=space, reward={"target_ms": 10.0, "exponent": -1.0},
                                 accuracy_key="val_acc")
    assert strategy.reward_of({"default": 0.5, "val_acc": 0.5, "latency_ms": 20.0}) == pytest.approx(math.asin(0.25))
    assert strategy.reward_of({"default": float("-inf")}) is None
    with pytest.raises(ConfigError, match="val_acc"):
        strategy.reward_of({"default": 0.5, "latency_ms": 3.0})
