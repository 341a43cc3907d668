"""The LSTM controller: a proper distribution over arcs, seeded, resumable, and REINFORCE learns."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facenas.errors import ConfigError
from facenas.plugins.enas.controller import Controller, ControllerConfig, ReinforceTrainer
from facenas.nas.space import create_space, grid



@pytest.fixture(scope="module")
def micro_space():
    """2 cells x 2 nodes x 2 ops with one skip: 128 arcs, small enough to enumerate."""
    return create_space("enas", num_cells=2, num_nodes=2, channels=4, stem_stride=1, reductions=[1], input_size=8,
                        embedding_size=4, ops=["sep_conv_3x3", "max_pool_3x3"])


def test_log_probs_of_every_arc_sum_to_one(micro_space):
    ctrl = Controller(micro_space, seed=0)
    arcs = grid(micro_space)
    assert len(arcs) == 128
    total = sum(math.exp(ctrl.log_prob(a)) for a in arcs)
    assert total == pytest.approx(1.0, abs=1e-5)


def test_samples_follow_the_policy(micro_space):
    cfg = ControllerConfig(temperature=None, tanh_constant=None)  # sharper policy: frequencies differ
    ctrl = Controller(micro_space, cfg, seed=3)
    with torch.no_grad():
        for p in ctrl.op_logits.parameters():
            p.mul_(20)
    arcs = grid(micro_space)
    probs = {tuple(sorted(a.items())): math.exp(ctrl.log_prob(a)) for a in arcs}
    n = 2000
    counts: dict[tuple, int] = {}
    for _ in range(n):
        key = tuple(sorted(ctrl.sample().items()))
        counts[key] = counts.get(key, 0) + 1
    # the 5 likeliest arcs appear as often as their probabilities say (4 standard errors)
    for key, p in sorted(probs.items(), key=lambda kv: -kv[1])[:5]:
        se = math.sqrt(p * (1 - p) / n)
        assert abs(counts.get(key, 0) / n - p) < 4 * se + 1e-3


def test_sampling_is_seeded_and_valid():
    space = create_space("enas_test")
    a = Controller(space, seed=5)
    b = Controller(space, seed=5)
    c = Controller(space, seed=6)
    sa = [a.sample() for _ in range(5)]
    assert sa == [b.sample() for _ in range(5)]
    assert sa != [c.sample() for _ in range(5)]
    for s in sa:
        assert space.validate(s) == s
        assert list(s) == space.labels()
    assert space.validate(a.greedy())


def test_default_config_matches_the_paper_and_enas():
    cfg = ControllerConfig()
    assert cfg.lstm_size == 100  # Zhu 2019 Sec. 3
    ctrl = Controller(create_space("enas_test"))
    assert ctrl.lstm[0].hidden_size == 100
    with pytest.raises(ConfigError, match="temperature"):
        ControllerConfig.from_dict({"temperature": 0.0})
    with pytest.raises(ConfigError, match="did you mean"):
        ControllerConfig.from_dict({"lstm_sizes": 64})


def test_one_reinforce_update_moves_probability_towards_the_rewarded_arc(micro_space):
    ctrl = Controller(micro_space, seed=1)
    trainer = ReinforceTrainer(ctrl)
    good, bad = ctrl.sample(), ctrl.sample()
    while bad == good:
        bad = ctrl.sample()
    before_good, before_bad = ctrl.log_prob(good), ctrl.log_prob(bad)
    trainer.update([good, bad], [1.0, 0.0])
    assert ctrl.log_prob(good) > before_good
    assert ctrl.log_prob(bad) < before_bad
    assert trainer.baseline == pytest.approx(0.5 + 1e-4 * 0, abs=0.05)


def test_reinforce_learns_a_toy_reward(micro_space):
    """Reward = fraction of decisions equal to a target arc: REINFORCE (ENAS defaults) makes it likelier."""
    ctrl = Controller(micro_space, seed=0)
    trainer = ReinforceTrainer(ctrl)
    target = micro_space.sample(np.random.default_rng(123))

    def reward(s):
        return sum(s[k] == v for k, v in target.items()) / len(target)

    start_p = math.exp(ctrl.log_prob(target))
    start_entropy = float(ctrl.evaluate(target).entropy.detach())
    for _ in range(100):
        samples = [ctrl.sample() for _ in range(8)]
        trainer.update(samples, [reward(s) for s in samples])
    assert math.exp(ctrl.log_prob(target)) > 3 * start_p  # 1/128 at the start
    assert float(ctrl.evaluate(target).entropy.detach()) < start_entropy
    assert reward(ctrl.greedy()) >= 6 / 7


def test_trainer_resumes_exactly(tmp_path):
    space = create_space("enas_test")

    def run(ctrl, trainer, steps):
        out = []
        for i in range(steps):
            samples = [ctrl.sample() for _ in range(3)]
            out.append(trainer.update(samples, [0.1 * i, 0.5, 0.2]))
        return out

    a = Controller(space, seed=2)
    ta = ReinforceTrainer(a)
    run(a, ta, 3)
    torch.save(ta.state_dict(), tmp_path / "ctrl.pt")
    rest_a = run(a, ta, 3)

    b = Controller(space, seed=99)  # a different seed: everything must come from the checkpoint
    tb = ReinforceTrainer(b)
    tb.load_state_dict(torch.load(tmp_path / "ctrl.pt", weights_only=True))
    rest_b = run(b, tb, 3)
    assert rest_a == rest_b
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_update_rejects_bad_rewards():
    space = create_space("enas_test")
    ctrl = Controller(space)
    trainer = ReinforceTrainer(ctrl)
    with pytest.raises(ValueError, match="finite"):
        trainer.update([ctrl.sample()], [float("nan")])
    with pytest.raises(ValueError, match="as many"):
        trainer.update([ctrl.sample()], [0.1, 0.2])


def test_latency_reward_steers_the_policy_to_faster_arcs():
    """Eq. 5 with accuracy held at 1 and a tight target: REINFORCE lowers the sampled arcs' latency,
    while a constant reward (no target) leaves it where it was (bench_enas_latency_controller in small)."""
    from facenas.adapters.runtime.latency_model import LatencyModel
    from facenas.plugins.enas.reward import RewardConfig, latency_reward

    space = create_space("enas_test")
    cost = {"sep_conv_5x5": 3.0, "sep_conv_3x3": 2.0, "skip": 1.0}
    latency = LatencyModel.from_entries(space, {b.key: next((v for k, v in cost.items() if f".{k}|" in b.key), 0.5)
                                                for b in space.all_latency_blocks()})
    rng = np.random.default_rng(0)
    tight = float(np.percentile([latency(space.sample(rng)) for _ in range(200)], 20))

    def mean_latency_after(target_ms):
        ctrl = Controller(space, ControllerConfig(lr=0.05), seed=0)
        trainer = ReinforceTrainer(ctrl)
        reward_cfg = RewardConfig(target_ms=target_ms, exponent=-0.5)
        for _ in range(25):
            samples = [ctrl.sample() for _ in range(8)]
            trainer.update(samples, [latency_reward(1.0, latency(s), reward_cfg) for s in samples])
        return float(np.mean([latency(ctrl.sample()) for _ in range(64)]))

    fresh = Controller(space, seed=0)
    start = float(np.mean([latency(fresh.sample()) for _ in range(64)]))
    steered, control = mean_latency_after(tight), mean_latency_after(None)
    assert steered < tight < start
    assert control == pytest.approx(start, rel=0.1)


def test_batch_norm_advantage_learns_from_rewards_of_cpu_scale_magnitude(micro_space):
    """Rewards of a few percent (a barely trained child) differing by 1e-3: the normalised advantage learns the
    target arc as it does at ENAS's reward scale, the ENAS moving-average advantage stays almost where it started."""
    target = micro_space.sample(np.random.default_rng(123))

    def reward(s):
        return 0.02 + 0.002 * sum(s[k] == v for k, v in target.items()) / len(target)

    gains = {}
    for mode in ("ema", "batch_norm"):
        ctrl = Controller(micro_space, ControllerConfig(advantage=mode), seed=0)
        trainer = ReinforceTrainer(ctrl)
        start = ctrl.log_prob(target)
        for _ in range(60):
            samples = [ctrl.sample() for _ in range(8)]
            trainer.update(samples, [reward(s) for s in samples])
        gains[mode] = ctrl.log_prob(target) - start
    assert gains["batch_norm"] > math.log(3)  # the target arc became > 3x likelier
    assert gains["batch_norm"] > 5 * abs(gains["ema"])


def test_batch_norm_advantage_of_equal_rewards_is_zero(micro_space):
    ctrl = Controller(micro_space, ControllerConfig(advantage="batch_norm"), seed=0)
    trainer = ReinforceTrainer(ctrl)
    s = [ctrl.sample() for _ in range(4)]
    before = [ctrl.log_prob(x) for x in s]
    trainer.update(s, [0.3] * 4)
    # only the (tiny) entropy term acts: the log-probabilities barely move
    assert [ctrl.log_prob(x) for x in s] == pytest.approx(before, abs=1e-3)


def test_unknown_advantage_mode_is_refused():
    with pytest.raises(ConfigError, match="advantage"):
        ControllerConfig(advantage="mean").validate("controller")
