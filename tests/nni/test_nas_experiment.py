"""NNI's own multi-trial strategies and our ask/tell strategies in ``NasExperiment`` on the toy space.

The toy space has 16 samples and a known optimum (the largest network, score 1.0,
``facenas.plugins.toy_stages.toy_score``). The sequential engine runs each model in this process.
"""
from __future__ import annotations

import importlib.util
import math

import pytest

from facenas.adapters.nni.space import to_model_space
from facenas.nas.space import create_space, grid
from facenas.plugins.toy_stages import toy_score

pytestmark = pytest.mark.nni

TOY_SIZE = 16


def toy_evaluator(model):
    """Evaluator function: report the toy score of the frozen model's sample (dict with default)."""
    import nni

    score = toy_score(model.facenas_sample)
    nni.report_final_result({"default": score, "toy_score": score})


def run_nas(strategy, budget, tmp_path, evaluator=None, continue_on_failure=False):
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig

    config = NasExperimentConfig("sequential", "simplified")
    config.max_trial_number = budget
    config.experiment_working_directory = str(tmp_path / "experiments")
    config.execution_engine.continue_on_failure = continue_on_failure
    exp = NasExperiment(to_model_space("toy"), evaluator or FunctionalEvaluator(toy_evaluator), strategy, config)
    try:
        exp.run()
        models = list(exp._engine.list_models())
        top = exp.export_top_models(top_k=1, formatter="dict")
    finally:
        exp.stop()
    return models, top


def _key(sample):
    return tuple(sorted(sample.items()))


def test_regularized_evolution_finds_the_optimum_with_fewer_evaluations_than_the_space(nas_home):
    import nni.nas.strategy as strategy

    found = 0
    for seed in range(5):
        evo = strategy.RegularizedEvolution(population_size=4, sample_size=2, mutation_prob=0.3, seed=seed)
        models, top = run_nas(evo, 10, nas_home / f"evo{seed}")
        assert len(models) == 10 and len({_key(m.sample) for m in models}) == 10  # dedup: 10 distinct of 16
        found += top[0] == create_space("toy").largest()
    # seeded, so deterministic; random search with 10 of 16 finds it with probability 10/16
    assert found >= 4, f"evolution found the optimum in {found}/5 seeded runs"


def test_random_and_grid_search_find_the_optimum(nas_home):
    import nni.nas.strategy as strategy

    for name, strat in (("random", strategy.Random(seed=0)), ("grid", strategy.GridSearch(seed=0))):
        models, top = run_nas(strat, TOY_SIZE, nas_home / name)
        assert {_key(m.sample) for m in models} == {_key(s) for s in grid(create_space("toy"))}, name
        assert top[0] == create_space("toy").largest(), name
        assert max(m.metric for m in models) == 1.0


def test_facenas_random_strategy_runs_inside_nas_experiment(nas_home):
    from facenas.adapters.nni.strategy import FacenasStrategy, stage_evaluator

    bridge = FacenasStrategy("random", seed=0)
    evaluator = stage_evaluator("toy.evaluate", {"epochs": 2}, nas_home / "stage_out")
    models, top = run_nas(bridge, TOY_SIZE, nas_home, evaluator=evaluator)
    history = bridge.strategy.history
    assert len(history) == TOY_SIZE and len({_key(s) for s, _ in history}) == TOY_SIZE
    # what the strategy was told is what the engine's model list holds
    assert {_key(s): m["default"] for s, m in history} == {_key(m.sample): m.metric for m in models}
    # the named metrics of the stage's dict result reached the strategy, not only 'default'
    assert all({"toy_score", "mflops", "params_m"} <= set(m) for _, m in history)
    assert top[0] == create_space("toy").largest()
    assert bridge.strategy.best()[0][0] == create_space("toy").largest()
    # each evaluation left its trial files
    assert len(list((nas_home / "stage_out").glob("*/final.json"))) == TOY_SIZE


def test_facenas_strategy_records_a_failed_model_and_goes_on(nas_home):
    from facenas.adapters.nni.strategy import FacenasStrategy, stage_evaluator

    bad = {"stem/width": 16, "block/kernel_size": 3, "block/depth": 1, "block/op": "dwconv"}
    bridge = FacenasStrategy("random", seed=1)
    evaluator = stage_evaluator("toy.evaluate", {"epochs": 1, "fail_if": bad}, nas_home / "out")
    models, _ = run_nas(bridge, TOY_SIZE, nas_home, evaluator=evaluator, continue_on_failure=True)
    told = {_key(s): m for s, m in bridge.strategy.history}
    assert len(told) == TOY_SIZE
    assert told[_key(bad)]["default"] == -math.inf and "failed" in told[_key(bad)]["error"]
    assert sum(m.status.value == "failed" for m in models) == 1
    assert max(m["default"] for m in told.values()) == 1.0


def test_facenas_strategy_object_state_round_trip(nas_home):
    from facenas.adapters.nni.strategy import FacenasStrategy
    from facenas.nas.strategy import RandomStrategy

    space = create_space("toy")
    bridge = FacenasStrategy(RandomStrategy(space, seed=3))
    run_nas(bridge, 5, nas_home)
    state = bridge.state_dict()
    again = FacenasStrategy(RandomStrategy(space, seed=99))
    again.load_state_dict(state)
    assert again.strategy.history == bridge.strategy.history
    assert again.strategy.ask() == bridge.strategy.ask()  # same generator state
    with pytest.raises(Exception, match="unknown strategy 'randm'"):
        FacenasStrategy("randm")


@pytest.mark.slow
def test_tpe_finds_the_optimum(nas_home):
    import nni.nas.strategy as strategy

    models, top = run_nas(strategy.TPE(), TOY_SIZE, nas_home)  # NNI's TPE wrapper sleeps 1 s per model
    assert max(m.metric for m in models) == 1.0


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tianshou") is None,
                    reason="PolicyBasedRL needs tianshou 0.5 + gym 0.26 (pip install 'facenas[nni-rl]')")
def test_policy_based_rl_searches_the_space(nas_home):
    import torch
    import nni.nas.strategy as strategy

    torch.manual_seed(0)
    models, _ = run_nas(strategy.PolicyBasedRL(samples_per_update=4), TOY_SIZE, nas_home)
    assert len(models) == TOY_SIZE and all(m.metric is not None for m in models)
