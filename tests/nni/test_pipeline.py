"""Pipeline scheduling (what the facenas advisors run), without an NNI manager."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from facenas.adapters.nni.envelope import ENVELOPE_KEY, TrialSpec, from_parameters
from facenas.adapters.nni.launch import load_yaml
from facenas.adapters.nni.pipeline import (
    PipelineConfig,
    PipelineScheduler,
    config_from_tuner,
    pipeline_config_of,
    run_pipeline_locally,
)
from facenas.adapters.nni.results import summarize
from facenas.errors import ConfigError, FacenasError
from facenas.nas.space import build_from_description, create_space
from facenas.utils.io import write_json

REPO = Path(__file__).resolve().parents[2]
TOY_TEST = REPO / "recipes" / "nni" / "toy_test.yml"


def _finish(sched: PipelineScheduler, pid: int, spec: TrialSpec, ok: bool = True, metrics=None) -> None:
    """Pretend a trial ran: write its result.json as the trial entry point would, report, end."""
    metrics = metrics or {"default": 0.5}
    write_json(Path(spec.out_dir) / "params.json", {"nni": {"trial_id": f"T{pid}"}})
    write_json(Path(spec.out_dir) / "result.json", {
        "status": "SUCCEEDED" if ok else "FAILED", "step": spec.step, "index": spec.index, "metrics": metrics,
        "result": {"checkpoint": f"{spec.out_dir}/ckpt.pt", "architectures": [{"sample": {"i": spec.index}}]},
        "params": spec.params, "arch": None})
    if ok:
        sched.on_final(pid, metrics)
    sched.on_end(pid, ok, "SUCCEEDED" if ok else "FAILED", f"T{pid}")


def _drain(sched):
    out = []
    while (nxt := sched.next_trial()) is not None:
        out.append(nxt)
    return out


def _run_to_end(sched) -> list[tuple[str, int, int]]:
    """Run every trial left, each batch as it becomes available; (step, index, attempt) in the order issued."""
    ran = []
    while not sched.finished:
        batch = _drain(sched)
        assert batch, "stuck"
        for pid, spec in batch:
            ran.append((spec.step, spec.index, spec.attempt))
            _finish(sched, pid, spec)
    return ran


def test_steps_run_in_order_with_parallel_trials_and_references(tmp_path):
    cfg = PipelineConfig.from_dict({"steps": [
        {"name": "supernet", "stage": "toy.train_supernet"},
        {"name": "cands", "stage": "toy.evaluate", "trials": 3, "params": {"ckpt": "${supernet.result.checkpoint}",
                                                                         "seed": "${seed}", "tag": "c${index}"}},
        {"name": "search", "stage": "toy.search", "params": {"dirs": "${cands[*].out_dir}",
                                                             "best": "${cands[best].metrics.default}",
                                                             "second": "${cands[1].index}", "lit": "$${x}"}},
        {"name": "retrain", "stage": "toy.evaluate", "foreach": "${search.result.architectures}",
         "params": {"sample": "${item.sample}"}},
    ], "seed": 10})
    sched = PipelineScheduler(cfg, tmp_path)
    first = _drain(sched)
    assert [s.step for _, s in first] == ["supernet"]  # the next step waits for this one
    _finish(sched, *first[0])
    cands = _drain(sched)
    assert [(s.step, s.index) for _, s in cands] == [("cands", 0), ("cands", 1), ("cands", 2)]
    assert cands[0][1].params == {"ckpt": str(tmp_path / "supernet/000/ckpt.pt"), "seed": 10, "tag": "c0"}
    for (pid, spec), score in zip(cands, (0.2, 0.9, 0.4)):
        assert _drain(sched) == []
        _finish(sched, pid, spec, metrics={"default": score})
    (pid, search), = _drain(sched)
    assert search.params == {"dirs": [str(tmp_path / f"cands/{i:03d}") for i in range(3)], "best": 0.9, "second": 1,
                             "lit": "${x}"}
    _finish(sched, pid, search)
    retrain = _drain(sched)
    assert [s.params for _, s in retrain] == [{"sample": {"i": 0}}]
    assert not sched.finished
    _finish(sched, *retrain[0])
    assert sched.finished and sched.status() == "finished"


def test_a_failed_trial_is_retried_then_recorded_and_the_pipeline_goes_on(tmp_path):
    cfg = PipelineConfig.from_dict({"steps": [
        {"name": "a", "stage": "toy.evaluate", "trials": 2, "retries": 1},
        {"name": "b", "stage": "toy.evaluate", "params": {"n": "${a[*].index}"}},
    ]})
    sched = PipelineScheduler(cfg, tmp_path)
    (p0, s0), (p1, s1) = _drain(sched)
    _finish(sched, p0, s0, ok=False)
    (p2, retry), = _drain(sched)
    assert (retry.index, retry.attempt) == (0, 1) and retry.out_dir.endswith("a/000-retry1")
    _finish(sched, p1, s1)
    _finish(sched, p2, retry, ok=False)  # retries used up: recorded as failed
    (p3, b), = _drain(sched)
    assert b.params == {"n": [1]}  # references see successful trials only
    _finish(sched, p3, b)
    assert sched.status() == "finished (2 failed trial(s))"


def test_a_step_whose_references_cannot_resolve_is_skipped(tmp_path):
    cfg = PipelineConfig.from_dict({"steps": [
        {"name": "a", "stage": "toy.evaluate"},
        {"name": "b", "stage": "toy.evaluate", "params": {"x": "${a.result.checkpoint}"}},
    ]})
    sched = PipelineScheduler(cfg, tmp_path)
    (p0, s0), = _drain(sched)
    _finish(sched, p0, s0, ok=False)
    assert _drain(sched) == []
    assert sched.finished and sched.status().startswith("incomplete (skipped steps: b)")
    assert "has 0 successful trials" in sched.step_state["b"]["note"]


def test_sample_steps_ask_a_facenas_strategy_and_tell_it_the_results(tmp_path):
    cfg = config_from_tuner("FacenasSearch", {"space": "toy", "stage": "toy.evaluate", "budget": 5, "seed": 3,
                                              "params": {"epochs": 1}})
    sched = PipelineScheduler(cfg, tmp_path)
    issued = _drain(sched)
    assert len(issued) == 5
    samples = [s.params["sample"] for _, s in issued]
    assert len({tuple(sorted(s.items())) for s in samples}) == 5
    assert all(s.space == "toy" and s.params["epochs"] == 1 for _, s in issued)
    for i, (pid, spec) in enumerate(issued):
        _finish(sched, pid, spec, ok=i != 2, metrics={"default": 0.1 * i, "toy_score": 0.1 * i})
    history = sched.strategies["search"].history
    assert len(history) == 5 and history[2][1]["default"] == -math.inf
    assert sched.finished


def test_exhausted_strategy_ends_the_step_early(tmp_path):
    cfg = config_from_tuner("FacenasSearch", {"space": "toy", "stage": "toy.evaluate", "budget": 40})
    sched = PipelineScheduler(cfg, tmp_path)
    issued = _drain(sched)
    assert len(issued) == 16  # the toy space has 16 samples; RandomStrategy does not repeat
    for pid, spec in issued:
        _finish(sched, pid, spec)
    assert sched.finished


def test_state_round_trip_and_resume_reissues_interrupted_trials(tmp_path):
    cfg = PipelineConfig.from_dict({"steps": [{"name": "a", "stage": "toy.evaluate", "trials": 3}]})
    sched = PipelineScheduler(cfg, tmp_path)
    (p0, s0), (p1, s1), (p2, s2) = _drain(sched)
    _finish(sched, p0, s0)
    state = json.loads(json.dumps(sched.state_dict()))
    again = PipelineScheduler(cfg, tmp_path)
    again.load_state_dict(state)
    again.keep_resumed([p1])  # NNI re-queued trial p1; p2 was killed by the stop
    assert again.reissue_interrupted() == [p2]
    (p3, s3), = _drain(again)
    assert (s3.index, s3.attempt) == (2, 1)
    _finish(again, p1, s1)
    _finish(again, p3, s3)
    assert again.finished and again.status() == "finished"
    with pytest.raises(FacenasError, match="saved pipeline has steps"):
        PipelineScheduler(PipelineConfig.from_dict({"steps": [{"name": "z", "stage": "toy.evaluate"}]}), tmp_path
                          ).load_state_dict(state)


def test_resume_with_a_revised_pipeline_keeps_unchanged_steps_and_reruns_changed_ones(tmp_path, caplog):
    """A revised experiment file resumes an interrupted run: unchanged steps keep their trials (not re-run),
    a step whose params changed runs again, and so does a step that uses its results; new steps run."""
    old = PipelineConfig.from_dict({"steps": [
        {"name": "a", "stage": "toy.evaluate", "params": {"x": 1}},
        {"name": "b", "stage": "toy.evaluate", "params": {"x": 2, "after": "${a.index}"}},
        {"name": "c", "stage": "toy.evaluate", "params": {"ckpt": "${b.result.checkpoint}"}},
        {"name": "d", "stage": "toy.evaluate", "params": {"ckpt": "${a.result.checkpoint}"}},
        {"name": "e", "stage": "toy.evaluate", "trials": 2, "params": {"ckpt": "${a.result.checkpoint}"}},
        {"name": "gone", "stage": "toy.evaluate", "params": {"after": "${e[*].index}"}},
    ]})
    sched = PipelineScheduler(old, tmp_path)
    for _ in range(2):  # a, then b (it refers to a)
        _finish(sched, *_drain(sched)[0])
    # c (it uses b), and beside it d and e, which use a only
    (pc, sc), (pd, sd), (pe0, se0), (pe1, se1) = _drain(sched)
    assert [s.step for s in (sc, sd, se0, se1)] == ["c", "d", "e", "e"]
    for pid, spec in ((pc, sc), (pd, sd), (pe0, se0)):
        _finish(sched, pid, spec)  # e: trial 0 done, trial 1 interrupted by the stop
    state = json.loads(json.dumps(sched.state_dict()))
    new = PipelineConfig.from_dict({"steps": [
        {"name": "a", "stage": "toy.evaluate", "params": {"x": 1}, "role": "reference", "retries": 2},  # reporting only
        {"name": "new", "stage": "toy.evaluate"},
        {"name": "b", "stage": "toy.evaluate", "params": {"x": 3, "after": "${a.index}"}},  # changed
        {"name": "c", "stage": "toy.evaluate", "params": {"ckpt": "${b.result.checkpoint}"}},  # uses b
        {"name": "d", "stage": "toy.evaluate", "params": {"ckpt": "${a.result.checkpoint}"}},
        {"name": "e", "stage": "toy.evaluate", "trials": 2, "params": {"ckpt": "${a.result.checkpoint}"}},
    ]})
    again = PipelineScheduler(new, tmp_path)
    with caplog.at_level("INFO", logger="facenas.adapters.nni.pipeline"):
        again.load_state_dict(state)
    log_text = caplog.text
    assert "step 'b' runs again: its params changed since the saved run" in log_text
    assert "step 'c' runs again: it uses the results of re-run step(s) ['b']" in log_text
    assert "step 'a' unchanged: kept (done, 1 finished trial(s))" in log_text
    assert "step 'gone'" not in log_text  # never ran: nothing to say
    assert {u.step for u in again.units.values()} == {"a", "d", "e"}
    assert (tmp_path / "replaced" / "b.1" / "000" / "result.json").is_file() and not (tmp_path / "b").exists()
    assert (tmp_path / "a" / "000" / "result.json").is_file()
    assert again.reissue_interrupted() == [pe1]  # e's interrupted trial, as before a revision
    ran = _run_to_end(again)
    # a, d and e's trial 0 are not run again; b (its reference a done) starts beside the new step
    assert ran == [("new", 0, 0), ("b", 0, 0), ("c", 0, 0), ("e", 1, 1)]
    assert again.status() == "finished"
    assert [(r["step"], r["index"]) for r in again.records("e")] == [("e", 0), ("e", 1)]


def test_resume_takes_the_running_step_of_the_saved_run_as_it_was(tmp_path):
    """The running step (e.g. a supernet training) stays running under an unchanged config: its trial is
    issued again in the same folder (where its checkpoint is), not re-numbered."""
    steps = [{"name": "a", "stage": "toy.evaluate"},
             {"name": "b", "stage": "toy.evaluate", "params": {"k": 1, "after": "${a.index}"}},
             {"name": "c", "stage": "toy.evaluate", "params": {"after": "${b.index}"}}]
    sched = PipelineScheduler(PipelineConfig.from_dict({"steps": steps}), tmp_path)
    _finish(sched, *_drain(sched)[0])
    state = json.loads(json.dumps(sched.state_dict()))  # as run-local saves it: a done, b running, no trial yet
    steps[2] = {"name": "c2", "stage": "toy.search", "params": {"after": "${b.index}"}}
    again = PipelineScheduler(PipelineConfig.from_dict({"steps": steps}), tmp_path)
    again.load_state_dict(state)
    (pid, spec), = _drain(again)
    assert (spec.step, spec.index, spec.attempt, spec.out_dir) == ("b", 0, 0, str(tmp_path / "b" / "000"))
    assert pid == state["next_param_id"]


def test_trial_swapped_by_nni_is_found_by_its_own_record(tmp_path):
    cfg = PipelineConfig.from_dict({"steps": [{"name": "a", "stage": "toy.evaluate", "trials": 2}]})
    sched = PipelineScheduler(cfg, tmp_path)
    (p0, s0), (p1, s1) = _drain(sched)
    write_json(Path(s1.out_dir) / "params.json", {"nni": {"trial_id": "XYZ"}})
    assert sched.unit_of_trial("XYZ").param_id == p1
    assert sched.unit_of_trial("nope") is None


@pytest.mark.parametrize("steps, message", [
    ([], "at least one step"),
    ([{"name": "a", "stage": "toy.evaluate"}, {"name": "a", "stage": "toy.evaluate"}], "unique"),
    ([{"name": "item", "stage": "toy.evaluate"}], "reserved"),
    ([{"name": "a b", "stage": "toy.evaluate"}], "must be a word"),
    ([{"name": "a", "stage": "toy.evaluate", "trails": 2}], "did you mean 'trials'"),
    ([{"name": "a", "stage": "toy.evaluate", "foreach": [1], "sample": {"space": "toy"}}], "both 'foreach' and 'sample'"),
    ([{"name": "a", "stage": "toy.evaluate", "sample": {"strategy": "random"}}], "needs a 'space'"),
])
def test_pipeline_config_errors_name_the_problem(steps, message):
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_dict({"steps": steps})


def test_unknown_stage_and_tuner_args_fail_early(tmp_path):
    with pytest.raises(FacenasError, match="unknown stage 'toy.evaluat'"):
        PipelineScheduler(PipelineConfig.from_dict({"steps": [{"name": "a", "stage": "toy.evaluat"}]}), tmp_path)
    with pytest.raises(ConfigError, match="missing"):
        config_from_tuner("FacenasSearch", {"space": "toy"})
    with pytest.raises(ConfigError, match="unknown field"):
        config_from_tuner("FacenasSearch", {"space": "toy", "stage": "toy.evaluate", "budget": 2, "budjet": 3})
    assert pipeline_config_of({"name": "TPE"}) is None


def test_envelope_round_trip_puts_the_sample_at_the_top_level():
    spec = TrialSpec(stage="toy.evaluate", params={"epochs": 2, "sample": {"stem/width": 8}}, out_dir="/x",
                     step="s", index=3, space="toy", space_config={})
    params = spec.to_parameters()
    assert params["stem/width"] == 8 and "sample" not in params[ENVELOPE_KEY]["params"]
    assert from_parameters(params) == spec
    plain = from_parameters({"stem/width": 8}, stage="toy.evaluate", params={"epochs": 1}, space="toy")
    assert plain.params == {"epochs": 1, "sample": {"stem/width": 8}} and plain.out_dir is None
    with pytest.raises(FacenasError, match="--stage"):
        from_parameters({"stem/width": 8})


def test_toy_test_pipeline_runs_locally_and_summarises(tmp_path):
    """The experiment file's own pipeline, run in-process: the same trials and files as under NNI."""
    pipeline = pipeline_config_of(load_yaml(TOY_TEST)["tuner"])
    sched = run_pipeline_locally(pipeline, tmp_path)
    assert sched.status() == "finished (1 failed trial(s))"
    summary = summarize(tmp_path)
    assert [(s["name"], s["succeeded"], s["failed"]) for s in summary["steps"]] == [
        ("supernet", 1, 0), ("candidates", 3, 1), ("search", 1, 0), ("retrain", 2, 0)]
    best = summary["best_architectures"]
    assert summary["best_architectures_step"] == "retrain" and best[0]["default"] == 1.0
    assert best[0]["arch"]["sample"] == create_space("toy").largest()
    assert build_from_description(best[0]["arch"]) is not None
    for name in ("summary.json", "summary.md", "best_architectures.json", "advisor_state.json"):
        assert (tmp_path / name).is_file(), name
    failed = [r for r in summary["trials"] if r["status"] == "FAILED"]
    assert len(failed) == 1 and "injected failure" in failed[0]["error"]


def test_results_cli_takes_an_output_folder_and_prints_the_trial_table(tmp_path, capsys):
    """`facenas nni results DIR --json`: one row per trial with its named metrics; the text form is a table."""
    from facenas.cli import main as facenas_main

    run_pipeline_locally(pipeline_config_of(load_yaml(TOY_TEST)["tuner"]), tmp_path / "run")
    capsys.readouterr()
    assert facenas_main(["nni", "results", str(tmp_path / "run"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["output_dir"] == str(tmp_path / "run") and len(summary["trials"]) == 8
    ok = [r for r in summary["trials"] if r["step"] == "candidates" and r["status"] == "SUCCEEDED"]
    assert len(ok) == 3 and all({"default", "toy_score", "mflops", "params_m"} <= set(r["metrics"]) for r in ok)
    assert facenas_main(["nni", "results", str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    assert "| step | role | index | status |" in text and "toy_score" in text and "## best architectures (step retrain)" in text


def _toy_sample(width: int) -> dict:
    return {"stem/width": width, "block/kernel_size": 3, "block/depth": 1, "block/op": "conv"}


def test_retry_failed_runs_a_finished_steps_failed_trials_again_first(tmp_path):
    """A leaf step's trial failed (its input was missing then): resuming with retry_failed runs it again."""
    present, supernet = tmp_path / "present.json", tmp_path / "supernet.json"  # the second: absent at first
    write_json(present, {"format": "facenas.toy_supernet/1", "space": "toy", "epochs": 1})
    cfg = {"name": "retry", "steps": [
        {"name": "cands", "stage": "toy.evaluate", "space": "toy",
         "foreach": [{"sample": _toy_sample(8), "supernet": str(present)},
                     {"sample": _toy_sample(16), "supernet": str(supernet)}],
         "params": {"sample": "${item.sample}", "supernet": "${item.supernet}", "epochs": 1}},
        {"name": "after", "stage": "toy.evaluate", "space": "toy", "params": {"sample": _toy_sample(8), "epochs": 1}},
    ]}
    out = tmp_path / "run"
    sched = run_pipeline_locally(cfg, out)
    assert sched.status() == "finished (1 failed trial(s))"
    write_json(supernet, {"format": "facenas.toy_supernet/1", "space": "toy", "epochs": 1})
    again = run_pipeline_locally(cfg, out)  # a plain resume keeps the failure
    assert again.status() == "finished (1 failed trial(s))"
    retried = run_pipeline_locally(cfg, out, retry_failed=True)
    cands = sorted((u.index, u.attempt, u.status) for u in retried.units.values() if u.step == "cands")
    assert cands == [(0, 0, "succeeded"), (1, 0, "failed"), (1, 1, "succeeded")]
    assert (out / "cands" / "001-retry1" / "result.json").is_file()
    assert [len(retried.records(s)) for s in ("cands", "after")] == [2, 1]  # the later step kept its trial
    assert sum(1 for u in retried.units.values() if u.step == "after") == 1


def test_retry_failed_runs_a_failed_first_step_again_and_the_steps_it_skipped(tmp_path):
    """The first step's only trial failed, so every later step was skipped (none issued a trial): resuming with
    retry_failed runs that trial again and then the later steps, resolved from its result."""
    supernet = tmp_path / "supernet.json"  # absent at first: the teacher-like step fails
    cfg = {"name": "retry_first", "steps": [
        {"name": "teacher", "stage": "toy.evaluate", "space": "toy",
         "params": {"sample": _toy_sample(8), "supernet": str(supernet), "epochs": 1}},
        {"name": "search", "stage": "toy.search", "params": {"candidates": "${teacher[*]}", "seed": "${teacher.index}", "epochs": 1}},
        {"name": "student", "stage": "toy.evaluate", "foreach": "${search.result.architectures}",
         "params": {"sample": "${item.sample}", "epochs": 1}},
    ]}
    out = tmp_path / "run"
    sched = run_pipeline_locally(cfg, out)
    assert [sched.step_state[s]["status"] for s in ("search", "student")] == ["skipped", "skipped"]
    write_json(supernet, {"format": "facenas.toy_supernet/1", "space": "toy", "epochs": 1})
    retried = run_pipeline_locally(cfg, out, retry_failed=True)
    assert retried.finished
    assert [len(retried.records(s)) for s in ("teacher", "search", "student")] == [1, 1, 2]
    assert (out / "teacher" / "000-retry1" / "result.json").is_file()


def test_a_retried_trial_killed_mid_run_is_run_again_by_a_plain_resume(tmp_path, monkeypatch):
    """--retry-failed queued the failed first step again and its trial started; the run was killed during it. The
    state saved at the start knows that trial, so the next run (without --retry-failed) runs it again instead of
    finding the step done with no success and skipping everything after it."""
    import facenas.adapters.nni.trial as trial_module

    supernet = tmp_path / "supernet.json"
    cfg = {"name": "killed_retry", "steps": [
        {"name": "teacher", "stage": "toy.evaluate", "space": "toy",
         "params": {"sample": _toy_sample(8), "supernet": str(supernet), "epochs": 1}},
        {"name": "student", "stage": "toy.evaluate", "space": "toy",
         "params": {"sample": _toy_sample(16), "seed": "${teacher.index}", "epochs": 1}},
    ]}
    out = tmp_path / "run"
    run_pipeline_locally(cfg, out)  # the teacher fails: no supernet file yet
    write_json(supernet, {"format": "facenas.toy_supernet/1", "space": "toy", "epochs": 1})
    real = trial_module.run_trial

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies while the retried trial runs

    monkeypatch.setattr(trial_module, "run_trial", killed)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline_locally(cfg, out, retry_failed=True)
    monkeypatch.setattr(trial_module, "run_trial", real)
    resumed = run_pipeline_locally(cfg, out)  # no --retry-failed this time
    assert resumed.finished and [len(resumed.records(s)) for s in ("teacher", "student")] == [1, 1]
    assert (out / "teacher" / "000-retry1" / "result.json").is_file()


def test_retry_failed_leaves_a_step_whose_results_a_started_step_used(tmp_path, caplog):
    cfg = PipelineConfig.from_dict({"steps": [
        {"name": "cands", "stage": "toy.evaluate", "trials": 2},
        {"name": "search", "stage": "toy.search", "params": {"candidates": "${cands[*]}"}},
    ]})
    sched = PipelineScheduler(cfg, tmp_path)
    a, b = _drain(sched)
    _finish(sched, *a)
    _finish(sched, *b, ok=False)
    (search,) = _drain(sched)  # the search started with the one successful candidate
    with caplog.at_level("WARNING"):
        assert sched.retry_failed() == []
    assert "used its results already" in caplog.text
    assert _drain(sched) == []
