"""`facenas nni run-local recipes/nni/tnas_test.yml`: the results list the searched architecture (slow, ~1.5 min)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tnas_run(tmp_path_factory):
    from facenas.cli import main as facenas_main

    out = tmp_path_factory.mktemp("tnas") / "run"
    assert facenas_main(["nni", "run-local", str(REPO / "recipes" / "nni" / "tnas_test.yml"), "--output", str(out)]) == 0
    return out


@pytest.mark.slow
def test_best_architectures_list_the_searched_architecture_with_its_metrics(tnas_run):
    best = json.loads((tnas_run / "best_architectures.json").read_text())
    searched = json.loads(next(tnas_run.glob("search/*/search/arch.json")).read_text())
    assert best["step"] == "student" and len(best["ranking"]) == 1
    top = best["ranking"][0]
    assert top["arch"]["sample"] == searched["sample"] and top["role"] == "candidate"
    assert top["metrics"]["default"] == top["metrics"]["val_acc"]  # a verification accuracy, not a loss
    assert top["metrics"]["latency_ms"] > 0 and top["metrics"]["mflops"] > 0
    assert Path(top["checkpoint"]).exists()
    # the search trial's record carries the architecture too (its arch.json), but it is not a candidate
    summary = json.loads((tnas_run / "summary.json").read_text())
    roles = {r["step"]: r["role"] for r in summary["trials"]}
    assert roles == {"data": "auxiliary", "teacher": "reference", "search": "auxiliary", "student": "candidate",
                     "uniform": "reference"}
    uniform = next(r for r in summary["trials"] if r["step"] == "uniform")
    assert uniform["metrics"]["latency_ms"] > 0  # every trained network is timed


@pytest.mark.slow
def test_demo_summary_reads_within_tolerance_from_the_search_record(tnas_run):
    """The demo summary's search block: the flag the search's result.json holds, not null."""
    from facenas.adapters.nni.results import summarize
    from recipes.demo import _search_summary

    row = next(r for r in summarize(tnas_run)["trials"] if r["step"] == "search")
    record = json.loads((Path(row["out_dir"]) / "result.json").read_text())
    got = _search_summary(row)
    assert isinstance(record["result"]["within_tolerance"], bool)
    assert got["within_tolerance"] is record["result"]["within_tolerance"]
    assert got["target_mflops"] == record["result"]["target_mflops"] and got["mflops"] == record["result"]["mflops"]
