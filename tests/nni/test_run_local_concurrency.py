"""run-local --concurrency: trials of a step in worker processes, as NNI's trialConcurrency runs them."""
from __future__ import annotations

import json
import os

import pytest

from facenas.adapters.nni.pipeline import run_pipeline_locally

SAMPLE = {"stem/width": 8, "block/kernel_size": 3, "block/depth": 1, "block/op": "conv"}


def _cfg(sleep_s: float) -> dict:
    return {"name": "conc", "steps": [
        {"name": "cands", "stage": "toy.evaluate", "space": "toy",
         "foreach": [{"width": w, "depth": d} for w, d in ((8, 1), (16, 1), (16, 2))],
         "params": {"sample": {**SAMPLE, "stem/width": "${item.width}", "block/depth": "${item.depth}"},
                    "epochs": 2, "sleep_s": sleep_s}},
        {"name": "search", "stage": "toy.search", "params": {"candidates": "${cands[*]}", "epochs": 1}},
    ]}


def _trials(out, step):
    rows = []
    for d in sorted((out / step).iterdir()):
        params = json.loads((d / "params.json").read_text())
        result = json.loads((d / "result.json").read_text())
        rows.append((params["process"]["pid"], result))
    return rows


def test_two_trials_at_a_time_in_their_own_processes_give_the_sequential_results(tmp_path):
    seq = run_pipeline_locally(_cfg(0.0), tmp_path / "seq")
    par = run_pipeline_locally(_cfg(1.0), tmp_path / "par", concurrency=2)
    assert par.status() == seq.status() == "finished"
    for step in ("cands", "search"):
        a, b = _trials(tmp_path / "seq", step), _trials(tmp_path / "par", step)
        numbers = [[{k: v for k, v in r["metrics"].items() if isinstance(v, (int, float))} for _, r in rows]
                   for rows in (a, b)]  # (paths differ: the two runs' folders)
        assert numbers[0] == numbers[1] and numbers[0]
    pids = [pid for pid, _ in _trials(tmp_path / "par", "cands")]
    assert os.getpid() not in pids and len(set(pids)) == 3  # a fresh process per trial
    assert {pid for pid, _ in _trials(tmp_path / "seq", "cands")} == {os.getpid()}
    # the first two overlapped: the second started (params.json) before the first ended (result.json)
    first, second = (tmp_path / "par" / "cands" / n for n in ("000", "001"))
    assert (second / "params.json").stat().st_mtime < (first / "result.json").stat().st_mtime
    # resumed (still with --concurrency 2): the finished trials are kept, nothing runs again
    stamps = {d.name: (d / "result.json").stat().st_mtime_ns for d in (tmp_path / "par" / "cands").iterdir()}
    assert run_pipeline_locally(_cfg(1.0), tmp_path / "par", concurrency=2).status() == "finished"
    assert {d.name: (d / "result.json").stat().st_mtime_ns for d in (tmp_path / "par" / "cands").iterdir()} == stamps


def test_concurrency_flag_takes_a_count_or_the_files_trial_concurrency(tmp_path, capsys):
    from facenas.cli import main

    assert main(["nni", "run-local", "recipes/nni/toy_test.yml", "--output", str(tmp_path / "r"),
                 "--concurrency", "0"]) == 2
    err = capsys.readouterr().err
    assert "--concurrency = '0'" in err and "whole number >= 1" in err
