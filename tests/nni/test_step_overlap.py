"""A step starts beside the previous step's last running trials when it does not use their results, so free
trial slots are not left idle (adapters/nni/pipeline.py, "Steps start in order")."""
from __future__ import annotations

import json

from facenas.adapters.nni.pipeline import PipelineConfig, PipelineScheduler
from tests.nni.test_pipeline import _drain, _finish, _run_to_end


def _take(sched, slots):
    """Ask for trials as a runner with ``slots`` free trial slots does."""
    out = []
    while len(out) < slots and (nxt := sched.next_trial()) is not None:
        out.append(nxt)
    return out


def _names(trials):
    return [(s.step, s.index) for _, s in trials]


# as enas_cpu.yml: the top arcs and the random arcs retrained (3 + 3), a timing that uses both
STEPS = [
    {"name": "search", "stage": "toy.evaluate"},
    {"name": "retrain", "stage": "toy.evaluate", "trials": 3, "params": {"arch": "${search.index}"}},
    {"name": "random_retrain", "stage": "toy.evaluate", "trials": 3, "params": {"arch": "${search.index}"}},
    {"name": "side_by_side", "stage": "toy.evaluate",
     "params": {"models": ["${retrain[*].out_dir}", "${random_retrain[*].out_dir}"]}},
]


def test_two_slots_stay_busy_across_steps_that_do_not_use_each_others_results(tmp_path):
    sched = PipelineScheduler(PipelineConfig.from_dict({"steps": STEPS}), tmp_path)
    (search,) = _drain(sched)
    _finish(sched, *search)
    running = _take(sched, 2)
    assert _names(running) == [("retrain", 0), ("retrain", 1)]
    _finish(sched, *running.pop(0))
    running += _take(sched, 1)
    assert _names(running) == [("retrain", 1), ("retrain", 2)]
    _finish(sched, *running.pop(0))
    # every retrain trial is issued and random_retrain does not use retrain: it takes the free slot
    running += _take(sched, 1)
    assert _names(running) == [("retrain", 2), ("random_retrain", 0)]
    assert sched.step_state["retrain"]["status"] == "running"
    _finish(sched, *running.pop(0))
    assert sched.step_state["retrain"]["status"] == "done"
    running += _take(sched, 1)
    assert _names(running) == [("random_retrain", 0), ("random_retrain", 1)]
    _finish(sched, *running.pop(0))
    _finish(sched, *running.pop(0))
    running += _take(sched, 2)
    assert _names(running) == [("random_retrain", 2)]  # side_by_side uses random_retrain: it waits
    _finish(sched, *running.pop(0))
    (timing,) = _drain(sched)
    assert timing[1].step == "side_by_side"
    assert len(timing[1].params["models"][0]) == 3 and len(timing[1].params["models"][1]) == 3
    _finish(sched, *timing)
    assert sched.finished and sched.status() == "finished"
    assert all(sched.step_state[s["name"]]["note"] == f"{s.get('trials', 1)}/{s.get('trials', 1)} succeeded"
               for s in STEPS)


def test_a_step_that_uses_the_running_steps_results_waits_for_all_of_them(tmp_path):
    steps = [{"name": "a", "stage": "toy.evaluate", "trials": 3},
             {"name": "b", "stage": "toy.evaluate", "params": {"dirs": "${a[*].out_dir}"}}]
    sched = PipelineScheduler(PipelineConfig.from_dict({"steps": steps}), tmp_path)
    trials = _drain(sched)
    for trial in trials[:2]:
        _finish(sched, *trial)
    assert _drain(sched) == []
    _finish(sched, *trials[2])
    (b,) = _drain(sched)
    assert len(b[1].params["dirs"]) == 3


def test_nothing_starts_beside_an_exclusive_trial_and_it_waits_for_every_running_trial(tmp_path):
    steps = [{"name": "a", "stage": "toy.evaluate", "trials": 2},
             {"name": "timed", "stage": "toy.evaluate", "exclusive": True},
             {"name": "c", "stage": "toy.evaluate", "trials": 2}]
    sched = PipelineScheduler(PipelineConfig.from_dict({"steps": steps}), tmp_path)
    a = _drain(sched)
    assert _names(a) == [("a", 0), ("a", 1)]  # the timing does not start beside them
    _finish(sched, *a[0])
    assert _drain(sched) == []
    assert sched.step_state["timed"]["status"] == "waiting"  # it starts when everything before it has ended
    _finish(sched, *a[1])
    (timed,) = _drain(sched)
    assert _drain(sched) == []  # c, which uses nothing, still does not run beside the measurement
    _finish(sched, *timed)
    assert _names(_drain(sched)) == [("c", 0), ("c", 1)]


def test_a_step_that_refers_to_the_experiments_folder_waits_for_every_earlier_step(tmp_path):
    steps = [{"name": "a", "stage": "toy.evaluate", "trials": 2},
             {"name": "b", "stage": "toy.evaluate", "params": {"root": "${experiment.output_dir}"}}]
    sched = PipelineScheduler(PipelineConfig.from_dict({"steps": steps}), tmp_path)
    a = _drain(sched)
    _finish(sched, *a[0])
    assert _drain(sched) == []
    _finish(sched, *a[1])
    assert _names(_drain(sched)) == [("b", 0)]


def test_a_retry_of_a_step_that_is_still_running_goes_before_the_next_steps_trials(tmp_path):
    steps = [{"name": "a", "stage": "toy.evaluate", "trials": 2, "retries": 1},
             {"name": "b", "stage": "toy.evaluate", "trials": 3}]
    sched = PipelineScheduler(PipelineConfig.from_dict({"steps": steps}), tmp_path)
    running = _take(sched, 3)
    assert _names(running) == [("a", 0), ("a", 1), ("b", 0)]
    _finish(sched, *running.pop(0), ok=False)  # a's trial 0 fails: its retry is queued in a running step
    (retry,) = _take(sched, 1)
    assert (retry[1].step, retry[1].index, retry[1].attempt) == ("a", 0, 1)
    assert not sched.finished
    for trial in running + [retry]:
        _finish(sched, *trial)
    _run_to_end(sched)
    assert sched.step_state["a"]["note"] == "2/2 succeeded" and sched.step_state["b"]["note"] == "3/3 succeeded"


def test_a_run_stopped_with_two_steps_running_resumes_each_interrupted_trial_once(tmp_path):
    cfg = PipelineConfig.from_dict({"steps": STEPS})
    sched = PipelineScheduler(cfg, tmp_path)
    _finish(sched, *_drain(sched)[0])
    running = _take(sched, 2)
    _finish(sched, *running.pop(0))
    running += _take(sched, 1)
    _finish(sched, *running.pop(0))
    running += _take(sched, 1)
    assert _names(running) == [("retrain", 2), ("random_retrain", 0)]
    state = json.loads(json.dumps(sched.state_dict()))  # stopped here: both trials interrupted
    again = PipelineScheduler(cfg, tmp_path)
    again.load_state_dict(state)
    assert sorted(again.reissue_interrupted()) == sorted(pid for pid, _ in running)
    ran = _run_to_end(again)
    assert sorted(ran) == [("random_retrain", 0, 1), ("random_retrain", 1, 0), ("random_retrain", 2, 0),
                           ("retrain", 2, 1), ("side_by_side", 0, 0)]
    assert [r["index"] for r in again.records("retrain")] == [0, 1, 2]
    assert [r["index"] for r in again.records("random_retrain")] == [0, 1, 2]
    assert again.status() == "finished"
