"""benchmarks/collect_pipeline.py: several seed runs of one experiment file in one record."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.collect_pipeline import main, record_runs
from benchmarks.seed_rows import RowSource, networks, pipeline_rows

EXPERIMENT = "recipes/nni/reference_front_cpu.yml"
STEPS = ["a", "a_latency", "b", "b_latency"]


def _run(folder: Path, seed: int | None, done: dict[str, float], trial_seed: bool = False) -> Path:
    """A run folder as `facenas nni run-local` leaves it: advisor state (pipeline seed) and the trials done."""
    config = {"name": "front", "steps": [{"name": s, "stage": "x"} for s in STEPS]}
    if seed is not None:
        config["seed"] = seed
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "advisor_state.json").write_text(json.dumps({"name": "front", "config": config}))
    for step, acc in done.items():
        for name, stage, params, metrics in (
                (step, "engine.train", {"config": "c.py", "threads": 1, **({"seed": seed} if trial_seed else {})},
                 {"lfw_acc": acc, "lfw_acc_std": 0.01, "epochs": 20.0, "output": f"{folder}/{step}/000/train"}),
                (f"{step}_latency", "runtime.latency", {"model": f"{folder}/{step}/000/train/last.pt"},
                 {"latency_ms": {"onnxruntime": 1.0, "tflite": 2.0}})):
            trial = folder / name / "000"
            trial.mkdir(parents=True, exist_ok=True)
            (trial / "result.json").write_text(json.dumps({
                "step": name, "index": 0, "stage": stage, "role": "candidate", "status": "SUCCEEDED",
                "params": params, "process": {"host": "h"}, "metrics": metrics}))
    return folder


def _collect(results: Path, run: Path, name: str = "front", experiment: str = EXPERIMENT) -> int:
    return main([str(run), "--name", name, "--experiment", experiment, "--results", str(results)])


def _result(results: Path, name: str = "front") -> dict:
    return json.loads((results / f"{name}.json").read_text())["result"]


def test_seed_runs_are_kept_per_seed_and_a_progressed_run_replaces_its_partial_entry(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    assert _collect(results, _run(tmp_path / "s7", 7, {"a": 0.80, "b": 0.85})) == 0
    assert _collect(results, _run(tmp_path / "s1", 1, {"a": 0.82})) == 0  # seed 1, partial: b not trained yet
    r = _result(results)
    assert list(r["runs"]) == ["7", "1"] and r["seeds"] == [7, 1]
    assert r["runs"]["1"]["pending_steps"] == ["b", "b_latency"] and r["runs"]["1"]["folder"] == "s1"
    # the top level stays the primary (first) run, for readers of one run
    assert r["seed"] == 7 and r["trials"] == r["runs"]["7"]["trials"] and r["pending_steps"] == []
    latency = next(t for t in r["runs"]["1"]["trials"] if t["step"] == "a_latency")
    assert latency["params"]["model"] == "$RUN_DIR/a/000/train/last.pt"  # each run's folder written as $RUN_DIR

    _run(tmp_path / "s1", 1, {"a": 0.82, "b": 0.86})  # the run progressed
    assert _collect(results, tmp_path / "s1") == 0
    r = _result(results)
    assert list(r["runs"]) == ["7", "1"]  # replaced, not added
    assert r["runs"]["1"]["pending_steps"] == [] and len(r["runs"]["1"]["trials"]) == 4
    nets = {n.name: n for n in networks(pipeline_rows("front", r, RowSource("front", "hand-designed", role="reference")))}
    assert nets["a"].seeds == [7, 1] and nets["a"].accuracy.values == (0.80, 0.82)
    assert nets["b"].accuracy.values == (0.85, 0.86) and nets["b"].latency_ms == {"onnxruntime": 1.0, "tflite": 2.0}


def test_a_record_written_before_seeds_were_kept_becomes_the_primary_run(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    legacy = {"pipeline": "front", "experiment_file": EXPERIMENT, "pending_steps": [], "trials": [
        {"step": "a", "index": 0, "stage": "engine.train", "status": "SUCCEEDED", "params": {"seed": 2048},
         "metrics": {"lfw_acc": 0.9}}]}
    (results / "front.json").write_text(json.dumps({"result": legacy}))
    assert [r["seed"] for r in record_runs(legacy)] == [2048]  # read as one run, seed from its trials
    assert _collect(results, _run(tmp_path / "s1", 1, {"a": 0.8})) == 0
    r = _result(results)
    assert list(r["runs"]) == ["2048", "1"] and r["trials"] == legacy["trials"] and r["seed"] == 2048


def test_the_seed_comes_from_the_advisor_state_else_from_the_trials(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    assert _collect(results, _run(tmp_path / "r", None, {"a": 0.8}, trial_seed=False)) == 0
    assert list(_result(results)["runs"]) == ["unknown"]
    _run(tmp_path / "t", None, {"a": 0.8}, trial_seed=False)
    assert _collect(results, tmp_path / "t", name="other") == 0
    (tmp_path / "u").mkdir()
    _run(tmp_path / "u", 3, {"a": 0.8}, trial_seed=True)
    state = json.loads((tmp_path / "u" / "advisor_state.json").read_text())
    del state["config"]["seed"]  # no pipeline seed: the trials' shared `seed` parameter says it
    (tmp_path / "u" / "advisor_state.json").write_text(json.dumps(state))
    assert _collect(results, tmp_path / "u", name="third") == 0
    assert list(_result(results, "third")["runs"]) == ["3"]


def test_bad_collections_are_one_line_exit_2(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    assert _collect(results, _run(tmp_path / "s1", 1, {"a": 0.8})) == 0
    capsys.readouterr()
    assert _collect(results, _run(tmp_path / "s2", 2, {"a": 0.8}), experiment="recipes/nni/other.yml") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give this run its own --name" in err and "other.yml" in err
    assert _collect(results, _run(tmp_path / "s3", None, {"a": 0.8})) == 2  # a run of unknown seed among seeds
    assert "seed cannot be read" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _collect(results, tmp_path / "empty") == 2
    assert "not the --output folder of a pipeline run" in capsys.readouterr().err
    assert list(_result(results)["runs"]) == ["1"]  # nothing written by the refused ones


@pytest.mark.parametrize("seed", [0, 2048])
def test_seed_zero_is_a_seed(tmp_path, seed):
    results = tmp_path / "results"
    results.mkdir()
    assert _collect(results, _run(tmp_path / "r", seed, {"a": 0.8})) == 0
    assert _result(results)["seed"] == seed and list(_result(results)["runs"]) == [str(seed)]


def test_a_failed_trial_keeps_its_error_message(tmp_path):
    """A trial that failed for a reason worth reporting (an OFA bound below the space's smallest subnet) keeps the
    message in the record; a succeeded one has no error field."""
    run = _run(tmp_path / "run", 2048, {"a": 0.8})
    trial = run / "b" / "000"
    trial.mkdir(parents=True)
    (trial / "result.json").write_text(json.dumps({
        "step": "b", "index": 0, "stage": "ofa.search", "role": "auxiliary", "status": "FAILED", "params": {},
        "error": "InfeasibleConstraintError: no subnet has latency <= 0.59 ms", "traceback": "Traceback ...",
        "metrics": {}}))
    assert _collect(tmp_path / "results", run) == 0
    trials = {t["step"]: t for t in _result(tmp_path / "results")["trials"]}
    assert trials["b"]["status"] == "FAILED" and trials["b"]["error"].startswith("InfeasibleConstraintError")
    assert "traceback" not in trials["b"] and "error" not in trials["a"]


def test_a_several_model_timing_keeps_what_the_side_by_side_pairing_reads(tmp_path):
    """runtime.latency over ``models`` (OFA's side_by_side_07x): the record keeps which networks were untrained
    architectures (``trained``) and each one's MFLOPs (``mflops_<name>``), so the headline pairs a searched
    network with a reference architecture timed in the same rounds (benchmarks.seed_rows.side_by_side)."""
    from benchmarks.seed_rows import side_by_side

    run = _run(tmp_path / "run", 0, {"a": 0.8})
    trial = run / "timing" / "000"
    trial.mkdir(parents=True)
    (trial / "result.json").write_text(json.dumps({
        "step": "timing", "index": 0, "stage": "runtime.latency", "role": "auxiliary", "status": "SUCCEEDED",
        "params": {"models": {"ref": {"config": "c.py"}, "pick": f"{run}/a/000/train/last.pt"}},
        "metrics": {"latency_ms": {"ref": {"onnxruntime": 2.0, "tflite": 1.8}, "pick": {"onnxruntime": 1.0, "tflite": 1.5}},
                    "trained": {"ref": False, "pick": True}, "mflops_ref": 37.9, "mflops_pick": 32.3,
                    "clock": "thread_time"}}))
    assert _collect(tmp_path / "results", run, name="search") == 0
    result = _result(tmp_path / "results", "search")
    timing = next(t for t in result["trials"] if t["step"] == "timing")
    assert timing["metrics"]["trained"] == {"ref": False, "pick": True}
    assert timing["metrics"]["mflops_ref"] == 37.9 and "clock" not in timing["metrics"]
    searched = networks(pipeline_rows("search", result, RowSource("search", "ofa", steps=("a",))))[0]
    reference = networks(pipeline_rows("front", {"trials": [
        {"step": "ref", "index": 0, "stage": "engine.train", "role": "reference", "status": "SUCCEEDED",
         "params": {"config": "c.py", "seed": 1}, "metrics": {"lfw_acc": 0.8, "mflops": 37.9}}]},
        RowSource("front", "hand-designed", role="reference")))[0]
    assert side_by_side(searched, reference, "onnxruntime") == (1.0, 2.0)


def test_a_search_keeps_its_per_epoch_curve_and_the_enas_summary_shows_it(tmp_path):
    """An ENAS search trial keeps the controller's per-epoch results (metrics.jsonl, what the portal plots: did the
    latency term steer it?), cut to the curve's keys, a torn last line left out; the ENAS section prints them."""
    from benchmarks.summary import section_enas

    run = _run(tmp_path / "run", 0, {})
    trial = run / "search" / "000"
    trial.mkdir(parents=True)
    (trial / "result.json").write_text(json.dumps({
        "step": "search", "index": 0, "stage": "enas.search", "role": "auxiliary", "status": "SUCCEEDED",
        "params": {"config": {"epochs": 3, "reward": {"target_ms": 0.38, "exponent": -3}}},
        "metrics": {"epochs": 3, "search_seconds": 60.0, "latency_ms": 0.36}}))
    lines = [{"type": "intermediate", "epoch": e, "latency_ms": lat, "entropy": ent, "accuracy": 0.01 * e,
              "child_loss": 5.0, "controller_seconds": 10.0}
             for e, lat, ent in ((1, 0.47, 48.2), (2, 0.41, 45.0), (3, 0.36, 42.7))]
    (trial / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines)
                                         + '\n{"type": "final"}\n{"type": "intermedi')
    assert _collect(tmp_path / "results", run, name="enas_cpu", experiment="recipes/nni/enas_cpu.yml") == 0
    search = next(t for t in _result(tmp_path / "results", "enas_cpu")["trials"] if t["step"] == "search")
    assert search["curve"] == [{"epoch": 1, "accuracy": 0.01, "latency_ms": 0.47, "entropy": 48.2},
                               {"epoch": 2, "accuracy": 0.02, "latency_ms": 0.41, "entropy": 45.0},
                               {"epoch": 3, "accuracy": 0.03, "latency_ms": 0.36, "entropy": 42.7}]
    assert all("curve" not in t for t in _result(tmp_path / "results", "enas_cpu")["trials"] if t["step"] != "search")
    text = section_enas(tmp_path / "results")
    assert ("reward target 0.3800 ms, q = -3; the controller's sampled arcs, mean predicted ms per epoch (1 to 3): "
            "0.470, 0.410, 0.360; policy entropy 48.2 -> 42.7 nats") in text


def test_the_findings_say_how_enas_top3_compares_with_random_arcs_and_where_the_search_ended(tmp_path):
    """The ENAS finding: the top-3 against their latency-matched random arcs (one seed each: Welch over networks,
    the verdict rule), and the controller's sampled arcs at the end against the reward's target."""
    from benchmarks.summary import _finding_enas

    assert _finding_enas(tmp_path / "results") == []  # no record: no sentence
    run = _run(tmp_path / "run", 0, {})
    trials = [("search", 0, "enas.search", "auxiliary", {"config": {"reward": {"target_ms": 0.38, "exponent": -3}}},
               {"epochs": 10})]
    for i, (top, rnd) in enumerate(((0.84, 0.83), (0.83, 0.84), (0.82, 0.835))):
        trials.append(("retrain", i, "enas.retrain", "candidate", {"seed": 2048, "search": {"rank": i + 1}},
                       {"lfw_acc": top, "epochs": 20.0}))
        trials.append(("random_retrain", i, "enas.retrain", "reference", {"seed": 2048, "search": {"matches": i + 1}},
                       {"lfw_acc": rnd, "epochs": 20.0}))
    for step, index, stage, role, params, metrics in trials:
        trial = run / step / f"{index:03d}"
        trial.mkdir(parents=True)
        (trial / "result.json").write_text(json.dumps({"step": step, "index": index, "stage": stage, "role": role,
                                                       "status": "SUCCEEDED", "params": params, "metrics": metrics}))
    (run / "search" / "000" / "metrics.jsonl").write_text("\n".join(json.dumps(
        {"type": "intermediate", "epoch": e, "latency_ms": lat, "entropy": 40.0}) for e, lat in ((1, 0.47), (2, 0.36))))
    assert _collect(tmp_path / "results", run, name="enas_cpu", experiment="recipes/nni/enas_cpu.yml") == 0
    (text,) = _finding_enas(tmp_path / "results")
    assert text.startswith("**ENAS, top-3 vs random arcs** (20-epoch retrains, one seed each, 3 vs 3 networks): "
                           "0.8300 ± 0.0100 against 0.8350 ± 0.0050 for the random arcs of matching predicted")
    assert "**tie** (difference -0.0050, p = 0." in text
    assert text.endswith("ended at 0.360 ms predicted (epoch mean; highest 0.470 ms) against the target 0.380 ms "
                         "(q = -3).")


def test_trials_are_recorded_in_the_pipelines_step_order_not_the_folders(tmp_path):
    """random1_seeds/ lists before random_retrain/ alphabetically; the record keeps the pipeline's order, so the
    first run of a network (the one readers publish and time) is its first step's."""
    run = tmp_path / "run"
    steps = ["random_retrain", "random1_seeds"]
    run.mkdir()
    (run / "advisor_state.json").write_text(json.dumps({"name": "p", "config": {"steps": [{"name": s} for s in steps]}}))
    for step in steps:
        for index in (1, 0):
            trial = run / step / f"{index:03d}"
            trial.mkdir(parents=True)
            (trial / "result.json").write_text(json.dumps({"step": step, "index": index, "stage": "x",
                                                           "status": "SUCCEEDED", "params": {}, "metrics": {}}))
    assert _collect(tmp_path / "results", run, name="p") == 0
    assert [(t["step"], t["index"]) for t in _result(tmp_path / "results", "p")["trials"]] == [
        ("random_retrain", 0), ("random_retrain", 1), ("random1_seeds", 0), ("random1_seeds", 1)]


def _experiment(tmp_path: Path) -> str:
    """An experiment file of STEPS, each ``*_latency`` step timing its network (it uses that step's result)."""
    steps = []
    for s in STEPS:
        uses = {"model": "${%s.result.output}/last.pt" % s[:-len("_latency")]} if s.endswith("_latency") else {}
        steps.append({"name": s, "stage": "runtime.latency" if uses else "engine.train", "params": uses})
    path = tmp_path / "front.yml"
    path.write_text(json.dumps({"tuner": {"name": "FacenasPipeline", "classArgs": {"name": "front", "steps": steps}}}))
    return str(path)


def _only(folder: Path, seed: int, steps: list[str], done: dict[str, float]) -> Path:
    """A run of some steps only (facenas nni run-local --steps): its advisor state names just those."""
    _run(folder, seed, done)
    config = {"name": "front", "seed": seed, "steps": [{"name": s, "stage": "x"} for s in steps]}
    (folder / "advisor_state.json").write_text(json.dumps({"name": "front", "config": config}))
    for extra in {p.name for p in folder.iterdir() if p.is_dir()} - set(steps):
        for f in (folder / extra).glob("*/result.json"):
            f.unlink()
    return folder


def test_a_step_run_on_its_own_merges_into_its_seeds_entry(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    experiment = _experiment(tmp_path)
    assert _collect(results, _run(tmp_path / "whole", 7, {"a": 0.80}), experiment=experiment) == 0
    before = _result(results)["runs"]["7"]
    assert before["pending_steps"] == ["b", "b_latency"]

    alone = _only(tmp_path / "alone", 7, ["b"], {"b": 0.86})
    capsys.readouterr()
    assert _collect(results, alone, experiment=experiment) == 2  # a plain collect would drop a and a_latency
    err = capsys.readouterr().err
    assert "holds only steps ['b']" in err and "(finished: ['b'])" in err and _result(results)["runs"]["7"] == before

    steps = ["--steps", "b"]
    assert main([str(alone), "--name", "front", "--experiment", experiment, "--results", str(results), *steps]) == 0
    entry = _result(results)["runs"]["7"]
    assert [t["step"] for t in entry["trials"]] == ["a", "a_latency", "b"]
    assert entry["pending_steps"] == ["b_latency"] and entry["folder"] == "whole"
    assert entry["merged_steps"]["b"]["folder"] == "alone"
    assert entry["trials"][:2] == before["trials"]

    # refused: a_latency (kept) used a's result; a step the folder did not finish; a seed the record lacks
    for argv, message in ((["--steps", "a"], "holds ['a_latency'], which used the results of ['a']"),
                          (["--steps", "b_latency"], "no finished trial of ['b_latency']"),
                          (["--steps", "c"], "has no step(s) ['c']")):
        capsys.readouterr()
        assert main([str(alone), "--name", "front", "--experiment", experiment, "--results", str(results),
                     *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv
    other = _only(tmp_path / "seed1", 1, ["b"], {"b": 0.84})
    capsys.readouterr()
    assert main([str(other), "--name", "front", "--experiment", experiment, "--results", str(results), *steps]) == 2
    assert "no run of seed 1 to merge into" in capsys.readouterr().err
    assert _result(results)["runs"]["7"] == entry


def test_a_merged_step_whose_input_the_entry_keeps_needs_that_input_reproduced(tmp_path, capsys):
    """a_latency times a's network: merged alone, it must come from a run whose `a` gave the entry's results (a
    deterministic training run again: the same accuracy, only its duration differs), else it would time another
    network than the one the entry's `a` describes."""
    results = tmp_path / "results"
    results.mkdir()
    experiment = _experiment(tmp_path)
    assert _collect(results, _run(tmp_path / "whole", 7, {"a": 0.80}), experiment=experiment) == 0
    entry = _result(results)["runs"]["7"]

    def again(name: str, acc: float) -> Path:
        run = _run(tmp_path / name, 7, {"a": acc})
        f = run / "a" / "000" / "result.json"
        f.write_text(json.dumps({**json.loads(f.read_text()), "metrics": {
            **json.loads(f.read_text())["metrics"], "train_seconds": 123.0}}))  # another duration: not a result
        return run

    argv = ["--name", "front", "--experiment", experiment, "--results", str(results), "--steps", "a_latency"]
    capsys.readouterr()
    assert main([str(again("changed", 0.81)), *argv]) == 2
    err = capsys.readouterr().err
    assert "a_latency used a, which the entry keeps from another run, and changed's a gave other results " \
           "(trial 0: metrics.lfw_acc: 0.81 vs 0.8): merge a too" in err
    assert _result(results)["runs"]["7"] == entry

    assert main([str(again("reproduced", 0.80)), *argv]) == 0  # its output folder differs: $RUN_DIR in both
    merged = _result(results)["runs"]["7"]
    assert merged["merged_steps"]["a_latency"]["folder"] == "reproduced"
    assert [t for t in merged["trials"] if t["step"] == "a"] == [t for t in entry["trials"] if t["step"] == "a"]
