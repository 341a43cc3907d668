"""End-to-end: real ``nnictl`` experiments on loopback with the facenas advisors and trial.

``test_toy_pipeline_end_to_end`` is the essential check of the NNI area (kept in the fast suite);
the others are slow. Every method's ``recipes/nni/<method>_test.yml`` runs through the same
:func:`facenas.adapters.nni.e2e.run_experiment_e2e`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import psutil
import pytest

from facenas.adapters.nni import launch
from facenas.adapters.nni.e2e import run_experiment_e2e
from facenas.adapters.nni.results import summarize
from facenas.nas.space import create_space

from .conftest import start_toy_experiment, stop_and_check_nothing_left

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "nni"

pytestmark = pytest.mark.nni


def test_toy_pipeline_end_to_end():
    """nnictl create -> FacenasPipeline advisor -> 8 trials (one injected failure) -> DONE -> stop, nothing left."""
    res = run_experiment_e2e(RECIPES / "toy_test.yml", timeout=600, expect_failed=1, required_metrics={
        "candidates": ["toy_score", "mflops", "params_m"], "retrain": ["toy_score", "mflops", "params_m"],
        "supernet": ["loss"], "search": ["best_score"]})
    assert res.status == "DONE" and res.bound_addresses == ["127.0.0.1"] and res.leftover_processes == []
    by_step: dict[str, list] = {}
    for t in res.trials:
        env = t["parameters"]["facenas"]
        by_step.setdefault(env["step"], []).append(t)
    assert {k: len(v) for k, v in by_step.items()} == {"supernet": 1, "candidates": 4, "search": 1, "retrain": 2}
    # the failure was the injected one, and the pipeline went on after it
    (failed,) = res.failed()
    assert failed["parameters"]["facenas"]["step"] == "candidates" and failed["parameters"]["block/op"] == "conv"
    # supernet training and the one-shot-like search show per-epoch intermediate results in the portal
    assert len(by_step["supernet"][0]["intermediates"]) == 3 and len(by_step["search"][0]["intermediates"]) == 3
    # final metrics carry named fields (beyond 'default')
    for t in by_step["candidates"] + by_step["retrain"]:
        if t["status"] == "SUCCEEDED":
            assert {"default", "toy_score", "mflops", "params_m"} <= set(t["final"])
    # the outcome: best architecture = the toy optimum, from the retrain step, with a summary
    assert res.summary["status"] == "finished (1 failed trial(s))"
    best = res.summary["best_architectures"][0]
    assert best["arch"]["sample"] == create_space("toy").largest() and best["step"] == "retrain"


@pytest.mark.slow
def test_facenas_search_tuner_end_to_end(tmp_path):
    # a work_dir of the test's own: the check deletes a temporary one, and the outputs are read below
    res = run_experiment_e2e(RECIPES / "toy_search_test.yml", timeout=600, required_metrics=["toy_score"],
                             work_dir=tmp_path / "nni")
    samples = [tuple(sorted((k, v) for k, v in t["parameters"].items() if k != "facenas")) for t in res.trials]
    assert len(res.trials) == 6 and len(set(samples)) == 6  # distinct samples although 2 ran at a time
    state = json.loads((Path(res.output_dir) / "advisor_state.json").read_text())
    assert len(state["steps"][0]["strategy_state"]["history"]) == 6  # the strategy was told every result


@pytest.mark.slow
def test_nni_tpe_tuner_with_the_facenas_trial_end_to_end(tmp_path):
    """Plain HPO: NNI's TPE over our generated search space, stage named on the trial command line."""
    res = run_experiment_e2e(RECIPES / "toy_tpe_test.yml", timeout=600, required_metrics=["toy_score"], min_trials=4,
                             work_dir=tmp_path / "nni")
    assert len(res.trials) == 4
    summary = summarize(res.output_dir)
    assert len(summary["trials"]) == 4 and summary["best_architectures_step"] == "trials"


def _wait(client, predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, trials = client.status()["status"], client.trials()
        if predicate(status, trials):
            return status, trials
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}: {status}, {[t['status'] for t in trials]}")


@pytest.mark.slow
def test_stop_resume_and_view(tmp_path):
    """Stop a pipeline mid-way, resume it to the end (killed trials run again), then view it read-only."""
    def slow_candidates(config):  # a candidate trial is still at work when the stop comes
        config["tuner"]["classArgs"]["steps"][1]["params"]["sleep_s"] = 2.0

    env, port, info = start_toy_experiment(tmp_path, edit=slow_candidates)
    exp_id, out = info["experiment_id"], Path(info["output_dir"])
    client = launch.RestClient(port)
    try:
        client.wait_reachable()
        _wait(client, lambda s, t: any(x["parameters"]["facenas"]["step"] == "candidates" and x["status"] == "RUNNING"
                                       for x in t), 300, "a running candidate trial")
        launch.stop(exp_id, env=env)
        # the manager is this process's child: reaped once it ended, not a zombie nnictl stop waits 60 s for
        assert not psutil.pid_exists(info["manager_pid"])
        before = json.loads((out / "advisor_state.json").read_text())
        interrupted = [u for u in before["units"] if u["status"] == "issued"]
        assert interrupted, "the stop interrupted running trials"
        port2 = launch.free_port()
        launch.resume(exp_id, port=port2, env=env)
        client = launch.RestClient(port2)
        client.wait_reachable()
        status, trials = _wait(client, lambda s, t: s == "DONE", 600, "the resumed experiment to finish")
        assert launch.listening_sockets(port2) == ["127.0.0.1"]
        summary = summarize(out, exp_id)
        assert [(s["name"], s["status"]) for s in summary["steps"]] == [
            ("supernet", "done"), ("candidates", "done"), ("search", "done"), ("retrain", "done")]
        after = json.loads((out / "advisor_state.json").read_text())
        # every trial the stop interrupted ran again: NNI re-queues some on resume (the advisor waits for them),
        # the others the advisor marks lost and re-issues; either way each ran to an end (candidate 0 is the
        # injected failure, so it ends failed)
        done = {(u["step"], u["index"]) for u in after["units"] if u["status"] in ("succeeded", "failed")}
        assert {(u["step"], u["index"]) for u in interrupted} <= done
        lost = {(u["step"], u["index"]) for u in after["units"] if u["status"] == "lost"}
        assert lost <= {(u["step"], u["index"]) for u in interrupted}
        assert summary["best_architectures"][0]["arch"]["sample"] == create_space("toy").largest()
        launch.stop(exp_id, env=env)
        port3 = launch.free_port()
        launch.view(exp_id, port=port3, env=env)
        client = launch.RestClient(port3)
        client.wait_reachable()
        assert client.status()["status"] == "VIEWED"
        assert len(client.trials()) == len(trials)
        assert launch.listening_sockets(port3) == ["127.0.0.1"]
    finally:
        stop_and_check_nothing_left(exp_id, env)


METHOD_TEST_FILES = sorted(p for p in RECIPES.glob("*_test.yml") if not p.name.startswith("toy"))


@pytest.mark.slow
@pytest.mark.parametrize("path", METHOD_TEST_FILES, ids=[p.stem for p in METHOD_TEST_FILES])
def test_every_method_test_experiment_passes_the_end_to_end_check(path):
    """Each search method's test-scale experiment: every trial SUCCEEDED, DONE, named final metrics, nothing left."""
    res = run_experiment_e2e(path, timeout=900)
    assert res.status == "DONE" and not res.failed() and res.leftover_processes == []
    for t in res.succeeded():
        assert set(t["final"]) - {"default"}, (path.name, t["final"])
        assert t["final"]["step"] == t["parameters"]["facenas"]["step"]  # the portal's `step (metric)` column
    # the portal ranks finite defaults only: they are the candidate networks', each timed
    ranked = [t for t in res.succeeded() if math.isfinite(t["final"]["default"])]
    assert ranked and all(t["final"]["role"] == "candidate" and t["final"]["latency_ms"] > 0 for t in ranked), \
        [(t["final"]["step"], t["final"]["role"], t["final"].get("latency_ms")) for t in ranked]


def test_every_method_ships_a_test_scale_experiment():
    names = {p.stem.split("_")[0] for p in METHOD_TEST_FILES}
    assert "tnas" in names, names
    for path in METHOD_TEST_FILES:
        space_file = path.read_text().split("searchSpaceFile:")[1].split()[0]
        assert (path.parent / space_file).is_file(), f"{path.name}: search space file {space_file} is missing"
