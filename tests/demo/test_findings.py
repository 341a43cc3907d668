"""README's "What the numbers say" (benchmarks/summary.section_findings): sentences built from the records by the
same computations as the tables, so no number in them is typed by hand."""
from __future__ import annotations

import json

from benchmarks.seed_stats import STRENGTH
from benchmarks.summary import README_BLOCKS, headline_comparisons, section_findings
from tests.demo.test_summary_seeds import _record as _seed_record
from tests.ofa.test_bench_ofa import _record as ofa_record

FLAT = {2048: {"mbf_x025": (0.840, 0.5, 0.6), "mbf_x05": (0.845, 1.5, 0.7)},
        1: {"mbf_x025": (0.842, 0.52, 0.62), "mbf_x05": (0.850, 1.4, 0.75)},
        2: {"mbf_x025": (0.841, 0.51, 0.61), "mbf_x05": (0.840, 1.6, 0.72)}}


def _front(tmp_path, seeds=FLAT):
    _seed_record(tmp_path, "reference_front_cpu", seeds, role="reference")


def test_the_front_sentence_states_the_baseline_over_seeds_and_whether_accuracy_is_flat(tmp_path):
    _front(tmp_path)
    md = section_findings(tmp_path)
    assert "MobileFaceNet x0.5 (10.0 MFLOPs, the 20-epoch protocol): LFW 0.8450 ± 0.0050 over seeds 2048, 1, 2." in md
    assert "have means 0.8410-0.8450, 0.40 points apart: at this scale the data" in md  # flat: < one point
    # mbf_x05 times 1.5 ms in onnxruntime and 0.72 in TFLite (medians): the runtimes disagree, said with the numbers
    assert "**mbf_x05** runs 2.1x faster in TFLite than in onnxruntime (0.720 vs 1.500 ms)" in md
    assert "**mbf_x025**" not in md  # 0.51 vs 0.61 ms: within 1.5x, nothing to say
    for label in ("onnxruntime", "TFLite"):
        assert f"**{label}**: no searched network with a recorded comparison yet" in md


def test_a_front_that_is_not_flat_makes_no_claim_about_the_data(tmp_path):
    steep = {s: {**nets, "mbf_x05": (nets["mbf_x05"][0] + 0.05, *nets["mbf_x05"][1:])} for s, nets in FLAT.items()}
    _front(tmp_path, steep)
    md = section_findings(tmp_path)
    assert "5.40 points apart." in md and "the data, not the network" not in md


def test_a_recorded_search_gives_its_strongest_verdict_per_runtime_with_its_numbers(tmp_path):
    from benchmarks.seed_rows import ROW_SOURCES, gather_rows, networks

    _front(tmp_path)
    (tmp_path / "ofa_cpu.json").write_text(json.dumps({"benchmark": "ofa_cpu", "date": "2026-12-06",
                                                       "result": ofa_record()}))
    md = section_findings(tmp_path)
    comps = headline_comparisons(networks(gather_rows(tmp_path, ROW_SOURCES)), ROW_SOURCES)["onnxruntime"]
    strongest = [(c, c.comp.verdict("strongest")) for c in comps if c.comp.strongest]
    assert strongest, "the fixture compares at least one pick on onnxruntime"
    line = next(l for l in md.splitlines() if l.startswith("* **onnxruntime**"))
    assert "the strongest comparison is ofa's" in line
    c, v = max(strongest, key=lambda cv: (STRENGTH[cv[1].label], cv[1].gain or 0))
    assert f"**{v.label}**" in line and f"against {c.comp.strongest}" in line
    assert ("dominated by " + ", ".join(c.comp.dominated_by) in line) == bool(c.comp.dominated_by)


def test_findings_is_a_readme_block():
    assert "findings" in README_BLOCKS


def _tnas(tmp_path, uniform_r04=None):
    from tests.tnas.test_protocol import synthetic_record

    record = synthetic_record()
    uniform = [t for t in record["trials"] if t["step"] == "uniform" and t["params"]["uniform_ratio"] == 0.4]
    for t, acc in zip(uniform, uniform_r04 or []):
        t["metrics"]["lfw_acc"] = acc
    (tmp_path / "tnas_cpu.json").write_text(json.dumps({"benchmark": "tnas_cpu", "date": "2026-12-06", "result": record}))


def _line(tmp_path, label="onnxruntime"):
    return next(l for l in section_findings(tmp_path).splitlines() if l.startswith(f"* **{label}**"))


def test_a_strongest_win_that_ties_its_own_reference_says_the_gain_is_not_the_searchs(tmp_path):
    """TNAS's searched student compares best with the front but ties the uniform student of its FLOPs (the same
    teacher): the sentence says so with that reference's numbers; when it beats the uniform one it does not."""
    _front(tmp_path)
    _tnas(tmp_path)  # ratio 0.4: student 0.8407 vs uniform 0.8417, a tie
    line = _line(tmp_path)
    assert "the strongest comparison is tnas's student ratio 0.4" in line
    assert line.endswith("but tnas's own reference for it, uniform ratio 0.4 (0.8417 ± 0.0035), ties it (p = 0.893): "
                         "what it gains over mbf_x05 is not the search's.")
    _tnas(tmp_path, uniform_r04=[0.800, 0.790, 0.810])  # now the student beats the uniform one
    line = _line(tmp_path)
    assert "the strongest comparison is tnas's student ratio 0.4" in line and "not the search's" not in line


def test_the_fastest_reference_is_judged_against_every_searched_network_by_the_rule_turned_around(tmp_path):
    """MobileFaceNet x0.25 (the fixture front's fastest) is as accurate as TNAS's ratio-0.4 student and ~3x faster,
    but 2.3 points below the ratio-0.5 one: the sentence groups the searched networks by that verdict."""
    _front(tmp_path)
    _tnas(tmp_path)
    line = _line(tmp_path, "Fastest reference, onnxruntime")
    assert line.startswith("* **Fastest reference, onnxruntime**: mbf_x025 (0.8410 ± 0.0010, 0.510 ms) against each "
                           "of the 2 searched networks with 3+ seeds")
    assert line.endswith("**as accurate, faster** than tnas's student ratio 0.4; **worse** than tnas's student "
                         "ratio 0.5.")
    assert "**Fastest reference, TFLite**: mbf_x025 (0.8410 ± 0.0010, 0.610 ms)" in section_findings(tmp_path)


def test_no_fastest_reference_sentence_without_a_searched_network(tmp_path):
    _front(tmp_path)
    assert "Fastest reference" not in section_findings(tmp_path)


def test_the_fastest_reference_ties_with_a_network_not_than_it(tmp_path):
    """A tie reads 'tie with', the other verdicts 'than'."""
    _front(tmp_path)
    _tnas(tmp_path)
    path = tmp_path / "tnas_cpu.json"
    data = json.loads(path.read_text())
    students = [t for t in data["result"]["trials"] if t["step"] == "student" and "/search/000/" in t["params"]["arch"]]
    for t, acc in zip(students, (0.80, 0.90, 0.85)):  # 0.9 points above x0.25 on average, spread wide: a tie
        t["metrics"]["lfw_acc"] = acc
    path.write_text(json.dumps(data))
    line = _line(tmp_path, "Fastest reference, onnxruntime")
    assert line.endswith("**as accurate, faster** than tnas's student ratio 0.4; **tie** with tnas's student "
                         "ratio 0.5.")


def test_the_win_against_the_fastest_reference_is_said_when_it_is_not_the_strongest_comparison(tmp_path):
    """TNAS students made faster: ratio 0.4 (0.3 ms) as accurate as MobileFaceNet x0.25 (0.51 ms), ratio 0.5
    (1.0 ms) better than x0.5 (1.5 ms). The strongest comparison is the ratio-0.5 student's; a second sentence gives
    the win at the lowest latency, with the clause that its own (uniform) reference ties it."""
    _front(tmp_path)
    _tnas(tmp_path)
    path = tmp_path / "tnas_cpu.json"
    data = json.loads(path.read_text())
    for t in data["result"]["trials"]:
        if t["step"] == "student_latency":  # ratio 0.4 (~1.4 ms) -> 0.3 ms, ratio 0.5 (~1.5 ms) -> 1.0 ms
            t["metrics"]["latency_onnxruntime_ms"] = 0.3 if t["metrics"]["latency_onnxruntime_ms"] < 1.45 else 1.0
    path.write_text(json.dumps(data))
    assert "the strongest comparison is tnas's student ratio 0.5" in _line(tmp_path)
    line = _line(tmp_path, "onnxruntime, the win against the fastest reference")
    assert line.startswith("* **onnxruntime, the win against the fastest reference**: tnas's student ratio 0.4 "
                           "(0.8407 ± 0.0110, 3 seeds) against mbf_x025 (0.8410 ± 0.0010, 3 seeds): **as accurate, "
                           "faster**")
    assert line.endswith("but tnas's own reference for it, uniform ratio 0.4 (0.8417 ± 0.0035), ties it (p = 0.893): "
                         "what it gains over mbf_x025 is not the search's.")
    assert "TFLite, the win against the fastest reference" not in section_findings(tmp_path)  # TFLite: unchanged
