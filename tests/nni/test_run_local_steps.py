"""``facenas nni run-local --steps``: some steps of an experiment file run on their own, and a later run of the
whole file in the same folder keeps their trials."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from facenas.adapters.nni.launch import load_yaml
from facenas.adapters.nni.pipeline import pipeline_config_of, select_steps
from facenas.cli import main as facenas_main
from facenas.errors import ConfigError

TOY_TEST = Path(__file__).resolve().parents[2] / "recipes" / "nni" / "toy_test.yml"


def _run(out: Path, steps: str | None = None) -> int:
    return facenas_main(["nni", "run-local", str(TOY_TEST), "--output", str(out),
                         *(["--steps", steps] if steps else [])])


def _trials(out: Path) -> dict[str, list[str]]:
    """Each step's trial folders that left a result.json, with the result's text (to tell a kept trial)."""
    found: dict[str, list[str]] = {}
    for result in sorted(out.glob("*/*/result.json")):
        found.setdefault(result.parent.parent.name, []).append(result.read_text(encoding="utf-8"))
    return found


def test_select_steps_keeps_the_files_order_and_refuses_a_missing_dependency():
    pipeline = pipeline_config_of(load_yaml(TOY_TEST)["tuner"])
    cut = select_steps(pipeline, ["candidates", "supernet"])
    assert [s["name"] for s in cut.steps] == ["supernet", "candidates"] and cut.name == pipeline.name
    with pytest.raises(ConfigError, match=r"step 'search' uses the results of \['candidates', 'supernet'\].*"
                                          r"--steps supernet,candidates,search"):
        select_steps(pipeline, ["search"])
    with pytest.raises(ConfigError, match="has no step 'supernt'; did you mean 'supernet'"):
        select_steps(pipeline, ["supernt"])


def test_a_step_run_alone_is_kept_by_the_whole_files_run_in_its_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(out, "supernet") == 0
    first = _trials(out)
    assert list(first) == ["supernet"]
    state = json.loads((out / "advisor_state.json").read_text())
    assert [s["name"] for s in state["steps"]] == ["supernet"]

    assert _run(out, "supernet,candidates") == 0  # more steps: the supernet's trial is kept, candidates run
    assert _trials(out)["supernet"] == first["supernet"] and len(_trials(out)["candidates"]) == 4

    capsys.readouterr()
    assert _run(out, "supernet") == 2  # fewer steps than the folder's run: refused, nothing moved
    err = capsys.readouterr().err
    assert "also holds steps ['candidates']" in err and "--steps supernet,candidates" in err
    assert len(_trials(out)["candidates"]) == 4 and not (out / "replaced").exists()

    assert _run(out) == 0  # the whole file: search and retrain run, the earlier steps' trials are kept
    done = _trials(out)
    assert done["supernet"] == first["supernet"] and len(done["candidates"]) == 4
    assert len(done["search"]) == 1 and len(done["retrain"]) == 2


def test_bad_steps_are_one_line_exit_2(tmp_path, capsys):
    assert _run(tmp_path / "run", "retrain") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "step 'retrain' uses the results of ['search']" in err
    assert not (tmp_path / "run").exists()


def test_a_step_interrupted_in_a_steps_run_continues_in_its_folder_when_the_whole_file_resumes(tmp_path):
    """The ofa_cpu.yml case: a supernet started alone (--steps), stopped mid-trial, then the whole file run in its
    folder; the new earlier step runs first, and the interrupted trial is issued again with its attempt and folder
    (where its checkpoint is), not as a new trial."""
    from facenas.adapters.nni.pipeline import PipelineConfig, PipelineScheduler, _resume_local
    from facenas.utils.io import write_json

    whole = PipelineConfig.from_dict({"name": "p", "steps": [
        {"name": "lut", "stage": "toy.evaluate"},
        {"name": "supernet", "stage": "toy.evaluate", "params": {"epochs": 3}},
        {"name": "evaluate", "stage": "toy.evaluate", "params": {"supernet": "${supernet.index}"}}]})
    alone = PipelineScheduler(select_steps(whole, ["supernet"]), tmp_path)
    pid, spec = alone.next_trial()
    assert (spec.step, spec.out_dir) == ("supernet", str(tmp_path / "supernet" / "000"))
    write_json(tmp_path / "advisor_state.json", alone.state_dict())  # stopped while the trial ran

    sched = PipelineScheduler(whole, tmp_path)
    _resume_local(sched, tmp_path / "advisor_state.json")
    first = sched.next_trial()
    assert first is not None and first[1].step == "lut"
    again = sched.next_trial()  # the supernet does not use lut's results: it starts beside it
    assert again is not None and (again[1].step, again[1].index, again[1].attempt, again[1].out_dir) == (
        "supernet", 0, 0, spec.out_dir)
    assert sched.next_trial() is None  # evaluate waits for the supernet
