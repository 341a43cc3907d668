"""Algorithm 1: QuickSelect by a comparator, bounded sampling, costs, the ask/tell strategy."""
from __future__ import annotations

import numpy as np
import pytest

from facenas.adapters.runtime.lut import MissingLatencyEntry
from facenas.plugins.ofa.costs import AdditiveCost, InfeasibleConstraintError
from facenas.plugins.ofa.predictors import Comparator, ComparatorConfig, MLPConfig, MLPPredictor
from facenas.plugins.ofa.search import (
    EvolutionConfig,
    OFAEvolutionStrategy,
    PredictorRanker,
    evolution_search,
    make_ranker,
    quickselect_top,
)
from facenas.nas.space import create_space
from facenas.nas.strategy import STRATEGIES, SearchExhausted


@pytest.fixture(scope="module")
def space():
    return create_space("ofa_tiny")


@pytest.fixture(scope="module")
def comparator(space):
    rng = np.random.default_rng(0)
    genomes = space.random_genomes(rng, 500)
    flops = AdditiveCost.flops(space).of_genomes(genomes)
    acc = np.round(0.8 + 0.1 * (flops - flops.min()) / np.ptp(flops) + 0.01 * rng.standard_normal(500), 3)
    return Comparator.fit(space.encode_genomes(genomes), acc, ComparatorConfig(num_pairs=4000))


def test_quickselect_returns_the_top_k_in_linear_comparisons():
    rng = np.random.default_rng(0)
    for n, k in ((125, 25), (300, 10), (50, 1), (10, 10)):
        values = rng.random(n)
        top, calls = quickselect_top(n, k, lambda o, p: np.where(values[o] > values[p], 1, -1), rng)
        assert sorted(top.tolist()) == sorted(np.argsort(-values)[:k].tolist())
        assert calls <= 6 * n
    # duplicates: the three-way partition stays linear, the two-way one degenerates
    values = np.concatenate([np.full(110, 0.5), rng.random(15)])
    three = quickselect_top(125, 25, lambda o, p: np.sign(values[o] - values[p]).astype(int), rng)
    two = quickselect_top(125, 25, lambda o, p: np.where(values[o] > values[p], 1, -1), rng)
    assert len(three[0]) == len(two[0]) == 25
    assert np.sort(values[three[0]])[0] == np.sort(values)[-25]
    assert three[1] < 3 * 125 < 2 * 3 * 125 < two[1]
    # any comparator (here random, not transitive) terminates with k items
    top, _ = quickselect_top(80, 7, lambda o, p: rng.choice([-1, 1], size=len(o)), rng)
    assert len(np.unique(top)) == 7


def test_compiled_search_equals_lightgbm_search_and_respects_the_bound(space, comparator):
    cost = AdditiveCost.flops(space)
    bound = cost.minimum() + 0.4 * (cost.maximum() - cost.minimum())
    config = EvolutionConfig(generations=40, population_size=30, seed=3)
    fast = evolution_search(space, make_ranker("comparator", space, comparator), cost, bound, config)
    ref = evolution_search(space, make_ranker("lightgbm", space, comparator), cost, bound, config, "lightgbm")
    assert fast.best == ref.best and fast.comparator_calls == ref.comparator_calls
    assert [t["sample"] for t in fast.top] == [t["sample"] for t in ref.top]
    assert all(t["cost"] <= bound for t in fast.top)
    assert fast.best == space.canonical(fast.best)
    assert fast.calls_per_generation < 4 * (config.population_size + config.num_parents)
    assert len(fast.top) == config.top_k and len({str(t["sample"]) for t in fast.top}) == config.top_k


def test_search_with_the_default_paper_settings_is_fast(space, comparator):
    cost = AdditiveCost.flops(space)
    bound = cost.minimum() + 0.5 * (cost.maximum() - cost.minimum())
    result = evolution_search(space, make_ranker("comparator", space, comparator), cost, bound, EvolutionConfig())
    assert result.generations == 500 and result.population_size == 100
    assert result.calls_per_generation < 4 * 125
    assert result.best_cost <= bound


def test_regression_search_finds_the_optimum_under_the_bound(space):
    cost = AdditiveCost.flops(space)

    class Oracle:  # predicted accuracy = FLOPs of the decoded encoding, via the genome cost table
        def predict(self, enc):
            per_block = enc.reshape(len(enc), 5, 4, 6)
            k, e = per_block[..., :3].argmax(-1), per_block[..., 3:].argmax(-1)
            active = per_block.sum(-1) > 0
            table = cost.table[np.arange(5)[None, :, None], np.arange(4)[None, None, :], k, e]
            return cost.fixed + (table * active).sum((1, 2))

    bound = cost.minimum() + 0.3 * (cost.maximum() - cost.minimum())
    result = evolution_search(space, PredictorRanker(space, Oracle()), cost, bound,
                              EvolutionConfig(generations=60, population_size=40), "oracle")
    assert bound - 0.02 * (cost.maximum() - cost.minimum()) <= result.best_cost <= bound
    assert result.top[0]["score"] == pytest.approx(result.best_cost)


def test_infeasible_bound_fails_fast_and_tight_bound_still_works(space, comparator):
    cost = AdditiveCost.flops(space)
    with pytest.raises(InfeasibleConstraintError, match=f"{cost.minimum():.4g}"):
        evolution_search(space, make_ranker("comparator", space, comparator), cost, cost.minimum() * 0.9)
    result = evolution_search(space, make_ranker("comparator", space, comparator), cost, cost.minimum(),
                              EvolutionConfig(generations=3, population_size=10, max_resample_rounds=5))
    assert result.best_cost == pytest.approx(cost.minimum())
    assert result.stats["repaired"] > 0
    literal = evolution_search(space, make_ranker("comparator", space, comparator), cost, cost.maximum(),
                               EvolutionConfig(generations=5, population_size=10, keep_parents=False))
    assert literal.best_cost <= cost.maximum()


def test_latency_costs_from_a_lookup_table(space):
    rng = np.random.default_rng(0)
    lut = {b.key: float(rng.uniform(0.1, 1.0)) for b in space.all_latency_blocks()}
    cost = AdditiveCost.latency(space, lut)
    for _ in range(10):
        sample = space.sample(rng)
        assert cost.of_sample(sample) == pytest.approx(sum(lut[b.key] for b in space.latency_blocks(sample)))
    assert cost.of_genomes(cost.cheapest_genome()[None])[0] == pytest.approx(cost.minimum())
    missing = dict(lut)
    dropped = sorted(missing)[:2]
    for key in dropped:
        del missing[key]
    with pytest.raises(MissingLatencyEntry, match="and 1 more") as err:
        AdditiveCost.latency(space, missing)
    assert err.value.missing == dropped and dropped[0] in str(err.value) and "facenas lut build" in str(err.value)


def test_mlp_ranker_search_runs(space):
    rng = np.random.default_rng(1)
    genomes = space.random_genomes(rng, 200)
    acc = AdditiveCost.flops(space).of_genomes(genomes)
    mlp = MLPPredictor.fit(space.encode_genomes(genomes), acc / acc.max(), MLPConfig(epochs=5, hidden_size=32))
    result = evolution_search(space, make_ranker("mlp", space, mlp), AdditiveCost.flops(space), float(np.median(acc)),
                              EvolutionConfig(generations=10, population_size=20), "mlp")
    assert result.comparator_calls == 20 * 10 and result.top[0]["score"] >= result.top[-1]["score"]


def test_evolution_strategy_ask_tell_improves_and_resumes(space):
    assert "ofa_evolution" in STRATEGIES.names()
    cost = AdditiveCost.flops(space)
    bound = cost.minimum() + 0.5 * (cost.maximum() - cost.minimum())
    strategy = STRATEGIES.create("ofa_evolution", space=space, seed=0, generations=6, population_size=12,
                                 max_mflops=bound)

    def evaluate(sample):
        return {"default": cost.of_sample(sample)}

    strategy.run(evaluate, budget=36)
    first_gen = max(m["default"] for _, m in strategy.history[:12])
    state = strategy.state_dict()
    twins = [OFAEvolutionStrategy(space, seed=0, generations=6, population_size=12, max_mflops=bound)
             for _ in range(3)]
    for twin in twins:
        twin.load_state_dict(state)
    assert twins[0].ask() == twins[1].ask()
    twins[2].run(evaluate, budget=100)
    history = strategy.run(evaluate, budget=100)
    assert len(history) == 72
    assert all(m["default"] <= bound + 1e-9 for _, m in history)
    assert strategy.best()[0][1]["default"] >= first_gen
    assert [s for s, _ in twins[2].history] == [s for s, _ in history]
    with pytest.raises(SearchExhausted):
        strategy.ask()
