"""The NNI portal of a finished facenas experiment, read in headless Chromium (slow).

What a user sees at ``http://127.0.0.1:PORT``: the overview's top trials are candidate networks
only (the searched students, not the data step, the teacher, the searches, the uniform comparison
networks or the timings), the best of them first, the trial table can show each trial's pipeline
step as a column, and each student's trial carries its search's found architecture's choices as
parameters, as OFA's final trials do.

Chromium is Debian's ``chromium`` package; when it is missing the test installs it with apt-get
(a fresh CI machine) and skips, with the reason, only where there is no apt-get to do so.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from facenas.adapters.nni import launch
from facenas.adapters.nni.e2e import run_experiment_e2e

from .portal_browser import Browser, ensure_chromium

pytestmark = [pytest.mark.slow, pytest.mark.nni]

TNAS_TEST = Path(__file__).resolve().parents[2] / "recipes" / "nni" / "tnas_test.yml"

#: click a button by its text / tick a Fluent UI checkbox by its label (the portal's column chooser)
CLICK = """(() => { const el = Array.from(document.querySelectorAll('button'))
  .find(e => e.innerText.trim() === %s); if (!el) return false; el.click(); return true; })()"""
TICK = """(() => { const span = Array.from(document.querySelectorAll('.ms-Checkbox-text'))
  .find(e => e.innerText.trim() === %s); if (!span) return false; span.closest('label').click(); return true; })()"""
#: the cells of every table row on the page (header rows have none)
ROWS = """Array.from(document.querySelectorAll('[role=row]')).map(r => Array.from(
  r.querySelectorAll('[role=gridcell],[role=rowheader]')).map(c => c.innerText.trim().split('\\n')[0]))
  .filter(r => r.length)"""
HEADERS = "Array.from(document.querySelectorAll('[role=columnheader]')).map(e => e.innerText.trim())"


@pytest.fixture(scope="module")
def chromium():
    path, reason = ensure_chromium()
    if path is None:
        pytest.skip(reason)
    return path


def test_portal_shows_each_trials_step_and_the_searched_students_as_best(chromium, tmp_path):
    res = run_experiment_e2e(TNAS_TEST, timeout=900, work_dir=tmp_path / "nni", keep=True)
    assert res.status == "DONE" and not res.failed(), res.trials
    step_of = {t["trial_id"]: t["parameters"]["facenas"]["step"] for t in res.trials}
    counts = {s: list(step_of.values()).count(s) for s in set(step_of.values())}
    assert counts == {"data": 1, "teacher": 1, "search": 2, "student": 6, "uniform": 6, "student_latency": 6,
                      "uniform_latency": 6}  # two FLOPs targets x three seeds per side, every student timed
    students = [i for i, s in step_of.items() if s == "student"]
    by_id = {t["trial_id"]: t for t in res.trials}
    best = max(students, key=lambda i: by_id[i]["final"]["default"])
    # what NNI holds: only the candidates have a finite default; every final names its step and role
    for tid, t in by_id.items():
        assert t["final"]["step"] == step_of[tid]
        assert math.isfinite(t["final"]["default"]) == (tid in students), t["final"]
    for tid in students:
        assert by_id[tid]["final"]["role"] == "candidate" and by_id[tid]["final"]["latency_ms"] > 0
    uniform = next(t for t in res.trials if t["parameters"]["facenas"]["step"] == "uniform")
    assert uniform["final"]["role"] == "reference" and "val_acc" in uniform["final"] and uniform["final"]["latency_ms"] > 0
    # each student's parameters are the choices its search found (the portal's space columns)
    found = [json.loads((Path(t["parameters"]["facenas"]["out_dir"]) / "search" / "arch.json").read_text())["sample"]
             for t in res.trials if t["parameters"]["facenas"]["step"] == "search"]
    for tid in students:
        assert {k: v for k, v in by_id[tid]["parameters"].items() if k != "facenas"} in found

    env = launch.nni_env(home=Path(res.work_dir) / "home", config_dir=Path(res.work_dir) / "nni-config")
    port = launch.free_port()
    launch.view(res.experiment_id, port=port, env=env)
    try:
        with Browser(chromium) as page:
            page.goto(f"http://127.0.0.1:{port}/oview")
            page.wait_for_text(best, timeout=120)
            page.wait_for(f"{ROWS}.some(r => r.includes({json.dumps(best)}))", 60, what="the top trials table")
            rows = [row for row in page.eval(ROWS) if any(c in by_id for c in row)]
            top = [next(c for c in row if c in by_id) for row in rows]
            assert top and set(top) <= set(students), f"top trials {[(t, step_of[t]) for t in top]}: expected students"
            assert top[0] == best
            assert float(rows[0][-1]) == pytest.approx(by_id[best]["final"]["default"], abs=1e-3)  # its default metric

            page.goto(f"http://127.0.0.1:{port}/detail")
            page.wait_for_text(best, timeout=120)
            page.wait_for(CLICK % json.dumps("Add/Remove columns"), 30, what="the Add/Remove columns button")
            page.wait_for(TICK % json.dumps("step (metric)"), 30, what="a 'step (metric)' column to choose")
            page.wait_for(CLICK % json.dumps("Save"), 30, what="the column chooser's Save button")
            page.wait_for(f"{HEADERS}.includes('step (metric)')", 30, what="the 'step (metric)' column")
            headers = page.eval(HEADERS)
            col = headers.index("step (metric)") - headers.index("ID")
            shown = {}
            for row in page.eval(ROWS):
                ids = [i for i, c in enumerate(row) if c in by_id]
                if ids:
                    shown[row[ids[0]]] = row[ids[0] + col]
            # every row the table shows (it pages 34 trials) names its trial's step
            assert len(shown) >= min(10, len(step_of)) and all(step_of[t] == s for t, s in shown.items()), shown
    finally:
        launch.stop(res.experiment_id, env=env)
