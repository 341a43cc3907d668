"""benchmarks/summary.py over seed runs: the reference front's mean ± std and the headline comparison."""
from __future__ import annotations

import json

from benchmarks.seed_rows import RowSource
from benchmarks.seed_stats import welch
from benchmarks.summary import render, section_headline, section_reference_front, update_readme


def _trials(nets: dict[str, tuple], seed: int, role: str = "candidate") -> list[dict]:
    """Per network an engine.train trial and the runtime.latency trial timing its last.pt."""
    out = []
    for step, (acc, ort, tfl) in nets.items():
        out.append({"step": step, "index": 0, "stage": "engine.train", "role": role, "status": "SUCCEEDED",
                    "host": "h", "params": {"config": "recipes/configs/c.py", "seed": seed, "threads": 1},
                    "metrics": {"lfw_acc": acc, "lfw_acc_std": 0.01, "epochs": 20.0, "mflops": 10.0}})
        out.append({"step": f"{step}_latency", "index": 0, "stage": "runtime.latency", "role": role,
                    "status": "SUCCEEDED", "params": {"model": f"$RUN_DIR/{step}/000/train/last.pt"},
                    "metrics": {"latency_ms": {"onnxruntime": ort, "tflite": tfl}, "device": {"cpu": "CPU X"}}})
    return out


def _record(results, name: str, seeds: dict[int, dict[str, tuple]], role: str = "candidate",
            pending: dict[int, list] | None = None) -> None:
    runs = {str(s): {"seed": s, "trials": _trials(nets, s, role), "pending_steps": (pending or {}).get(s, [])}
            for s, nets in seeds.items()}
    first = next(iter(runs.values()))
    result = {"pipeline": name, "experiment_file": f"recipes/nni/{name}.yml", "seed": first["seed"],
              "trials": first["trials"], "pending_steps": first["pending_steps"], "runs": runs}
    (results / f"{name}.json").write_text(json.dumps({"benchmark": name, "date": "2026-01-01", "result": result}))


REF = {2048: {"small": (0.80, 0.5, 0.6), "big": (0.85, 1.5, 1.2)},
       1: {"small": (0.81, 0.52, 0.62), "big": (0.86, 1.4, 1.3)},
       2: {"small": (0.79, 0.51, 0.61), "big": (0.84, 1.6, 1.25)}}
SOURCES = (RowSource("reference_front_cpu", "hand-designed", role="reference"),
           RowSource("ofa_cpu", "ofa", steps=("pick",), target_runtime={"pick": "onnxruntime"}))


def test_reference_front_shows_mean_std_over_seeds_and_per_seed_values_in_summary_md(tmp_path):
    _record(tmp_path, "reference_front_cpu", REF, pending={1: ["later", "later_latency"]})
    md = section_reference_front(tmp_path)
    # big: 0.85, 0.86, 0.84 -> mean 0.85, sample std 0.01; latency the median of 1.5, 1.4, 1.6
    assert "| big | c | 0.8500 ± 0.0100 | 3 | 2048: 0.8500, 1: 0.8600, 2: 0.8400 |" in md
    assert "| 1.5000 | 1.2500 |" in md
    assert "Seed runs recorded: 2048, 1, 2." in md and "seed 1: later;" in md and "seed 2048: none" in md
    readme = section_reference_front(tmp_path, per_seed=False)
    assert "| big | c | 0.8500 ± 0.0100 | 3 | 1.5000 | 1.2500 |" in readme and "2048: 0.8500" not in readme


def test_reference_front_with_one_seed_gives_the_value_without_a_std(tmp_path):
    _record(tmp_path, "reference_front_cpu", {2048: REF[2048]})
    assert "| small | c | 0.8000 | 1 | 2048: 0.8000 |" in section_reference_front(tmp_path)


def test_headline_with_three_seeds_gives_gain_welch_p_and_verdict(tmp_path):
    _record(tmp_path, "reference_front_cpu", REF)
    picks = {7: (0.875, 0.50), 8: (0.88, 0.50), 9: (0.87, 0.50)}  # as fast as `small`, 2.5 points above `big`
    _record(tmp_path, "ofa_cpu", {s: {"pick": (acc, ort, 0.9)} for s, (acc, ort) in picks.items()}, role="candidate")
    md = section_headline(tmp_path, SOURCES)
    p_big = welch([0.875, 0.88, 0.87], [0.85, 0.86, 0.84]).p
    p_small = welch([0.875, 0.88, 0.87], [0.80, 0.81, 0.79]).p
    assert p_big < 0.05 and p_small < 0.05
    ort = md.split("### onnxruntime")[1].split("### TFLite")[0]
    # small (0.51 ms median) is the fastest reference at least as slow as the pick (0.50 ms) and gives the best gain
    assert (f"| ofa: pick | onnxruntime | 0.8750 ± 0.0050 | 3 | 0.5000 | closest = strongest: small | 0.8000 ± 0.0100 "
            f"| 3 | 0.5100 | 0.98x (separate runs) | +0.0750 | {p_small:.3g} | better | – |") in ort
    tfl = md.split("### TFLite")[1]
    # TFLite: the pick (0.9 ms) is slower than small (0.61 ms), which is less accurate: not dominated; big is eligible
    assert f"| closest = strongest: big | 0.8500 ± 0.0100 | 3 | 1.2500 | 0.72x (separate runs) | +0.0250 | {p_big:.3g} | better | – |" in tfl


def test_headline_with_one_seed_says_not_a_headline_and_flags_domination(tmp_path):
    _record(tmp_path, "reference_front_cpu", REF)
    _record(tmp_path, "ofa_cpu", {7: {"pick": (0.82, 1.0, 1.0)}})
    md = section_headline(tmp_path, SOURCES)
    ort = md.split("### onnxruntime")[1].split("### TFLite")[0]
    assert "| closest = strongest: big | 0.8500 ± 0.0100 | 3 | 1.5000 | 0.67x (separate runs) | -0.0300 | – | n<3: not a headline |" in ort
    tfl = md.split("### TFLite")[1]
    assert "| n<3: not a headline | – |" in tfl  # TFLite: small (0.61 ms, 0.80) is faster but less accurate
    _record(tmp_path, "ofa_cpu", {7: {"pick": (0.79, 2.0, 2.0)}})  # slower than every reference, less accurate
    md = section_headline(tmp_path, SOURCES)
    assert "no reference is as slow or slower on this runtime | small, big |" in md


def test_headline_without_searched_networks_says_what_is_missing(tmp_path):
    _record(tmp_path, "reference_front_cpu", {2048: REF[2048], 1: REF[1]})
    md = section_headline(tmp_path)
    assert "_missing: no searched network has a seed run recorded" in md
    assert "`ofa_cpu` not recorded; `tnas_cpu` not recorded; `enas_cpu` not recorded" in md
    assert "(network seeds): small 2, big 2." in md and "| ofa" not in md
    _record(tmp_path, "tnas_cpu", {3: {"student": (0.8, 1.0, 1.0)}})  # recorded but not wired as a row source
    assert "`tnas_cpu` recorded (1 run, pipeline seed 3), not yet a row source" in section_headline(tmp_path, SOURCES[:1])
    md = section_headline(tmp_path)  # wired by default (seed_rows.ROW_SOURCES): its student is a searched network
    assert "| tnas: student |" in md and "Records: `ofa_cpu` not recorded; `tnas_cpu` recorded (1 run, pipeline seed 3); " \
                                      "`enas_cpu` not recorded." in md
    (tmp_path / "tnas_cpu.json").unlink()
    # a searched network without a latency trial: no comparison, and it says why
    _record(tmp_path, "ofa_cpu", {7: {"pick": (0.87, 0.5, 0.9)}})
    data = json.loads((tmp_path / "ofa_cpu.json").read_text())
    for run in data["result"]["runs"].values():
        run["trials"] = [t for t in run["trials"] if t["stage"] != "runtime.latency"]
    (tmp_path / "ofa_cpu.json").write_text(json.dumps(data))
    assert "the searched network has no measured latency or accuracy on this runtime" in section_headline(tmp_path, SOURCES)


def test_render_and_readme_blocks_include_the_seed_sections(tmp_path):
    _record(tmp_path, "reference_front_cpu", REF)
    render(tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "## Searched vs hand-designed, per runtime" in md and "| big | c | 0.8500 ± 0.0100 | 3 |" in md
    text = "<!-- summary:headline -->\n<!-- /summary:headline -->\n"
    assert "_missing: no searched network" in update_readme(text, tmp_path)
    assert (tmp_path / "summary_fronts.png").is_file()


def test_headline_tells_apart_references_of_two_records_with_one_name(tmp_path):
    _record(tmp_path, "reference_front_cpu", REF)
    ofa = {s: {"pick": (acc, 1.0, 1.0)} for s, acc in ((7, 0.84), (8, 0.845), (9, 0.835))}
    ofa_refs = {s: {"big": (acc, 1.1, 1.1)} for s, acc in ((7, 0.865), (8, 0.87), (9, 0.86))}
    _record(tmp_path, "ofa_cpu", ofa)
    data = json.loads((tmp_path / "ofa_cpu.json").read_text())
    for s, run in data["result"]["runs"].items():  # the OFA pipeline's own reference step, also named `big`
        run["trials"] += _trials(ofa_refs[int(s)], int(s), role="reference")
    (tmp_path / "ofa_cpu.json").write_text(json.dumps(data))
    sources = (SOURCES[0], RowSource("ofa_cpu", "ofa", target_runtime={"pick": "onnxruntime"}))
    ort = section_headline(tmp_path, sources).split("### onnxruntime")[1].split("### TFLite")[0]
    assert "| ofa: pick |" in ort and "ofa: big" not in ort  # the pipeline's reference is a reference
    # closest: the OFA record's big (1.1 ms), 2.5 points above: worse; strongest: the front's big (1.5 ms), a tie
    assert "| closest: big (ofa_cpu) | 0.8650 ± 0.0050 | 3 | 1.1000 | 0.91x (separate runs) | -0.0250 |" in ort and "| worse |" in ort
    assert "| strongest: big (reference_front_cpu) | 0.8500 ± 0.0100 | 3 | 1.5000 | 0.67x (separate runs) | -0.0100 |" in ort and "| tie |" in ort


def test_a_network_timed_alone_and_again_beside_the_references_is_compared_side_by_side(tmp_path):
    """A step timing each network alone (its row's latency) and a later one timing it beside the references'
    architectures: the comparison takes the second (one timing run), the table still shows the first."""
    _record(tmp_path, "reference_front_cpu", REF)
    _record(tmp_path, "ofa_cpu", {s: {"pick": (acc, 1.0, 1.0)} for s, acc in ((7, 0.84), (8, 0.845), (9, 0.85))})
    data = json.loads((tmp_path / "ofa_cpu.json").read_text())
    for run in data["result"]["runs"].values():
        run["trials"].append({"step": "beside", "index": 0, "stage": "runtime.latency", "role": "auxiliary",
                              "status": "SUCCEEDED", "params": {"models": {
                                  "pick": "$RUN_DIR/pick/000/train/last.pt", "big": {"config": "recipes/configs/c.py"}}},
                              "metrics": {"latency_ms": {"pick": {"onnxruntime": 1.0, "tflite": 1.0},
                                                         "big": {"onnxruntime": 1.6, "tflite": 1.2}},
                                          "mflops_big": 10.0, "trained": {"pick": True, "big": False}}})
    (tmp_path / "ofa_cpu.json").write_text(json.dumps(data))
    ort = section_headline(tmp_path, SOURCES).split("### onnxruntime")[1].split("### TFLite")[0]
    # big over seeds 0.85 / 0.86 / 0.84 at 1.5 ms on its own; beside the pick 1.6 ms: 0.62x, within half a point
    assert ("| ofa: pick | onnxruntime | 0.8450 ± 0.0050 | 3 | 1.0000 | closest = strongest: big | 0.8500 ± 0.0100 | 3 "
            "| 1.5000 | 0.62x (side by side: 1.000 / 1.600 ms) | -0.0050 |") in ort
    assert "| as accurate, faster |" in ort
