"""The headline reads every method's record in the shape its experiment file writes it (benchmarks/seed_rows.py,
summary.section_headline): a ``foreach`` over seeds is one network over those seeds, its latency the step that
timed it (OFA's and ENAS's ``side_by_side``: ``latency_ms`` ``{name: {runtime: ms}}``; TNAS's per-student
``runtime.latency``), and each method's own comparison (TNAS: uniform students of the same FLOPs target;
ENAS: the random arc of matching latency) uses the one verdict rule (benchmarks/seed_stats.py)."""
from __future__ import annotations

import json

import pytest

from benchmarks.seed_rows import ROW_SOURCES, RowSource, networks, pipeline_rows
from benchmarks.seed_stats import FEW_SEEDS, verdict
from benchmarks.summary import section_headline
from tests.demo.test_summary_seeds import REF, _record as _seed_record
from tests.ofa.test_bench_ofa import _record as ofa_record, with_retrain
from tests.tnas.test_protocol import ACC, synthetic_record as tnas_record

SOURCES = {s.record: s for s in ROW_SOURCES}


def _write(results, name, result):
    (results / f"{name}.json").write_text(json.dumps({"benchmark": name, "date": "2026-12-06", "result": result}))


def _nets(record: dict, source: RowSource) -> dict:
    return {n.name: n for n in networks(pipeline_rows(source.record, record, source))}


def test_a_foreach_over_fine_tuning_seeds_is_one_network_over_those_seeds():
    """ofa_cpu.yml: finetune_* is a foreach over [2048, 1, 2] in a run of seed 0; side_by_side times every seed's
    network with the references in one trial (``models``)."""
    record = {**ofa_record(), "seed": 0}  # the pipeline's own seed, not the fine-tuning seeds
    plain = RowSource("ofa_cpu", "ofa", steps=("finetune_onnxruntime_mbf_x05", "equal_budget"),
                      target_runtime={"finetune_onnxruntime_mbf_x05": "onnxruntime"})
    nets = _nets(record, plain)
    assert set(nets) == {"finetune_onnxruntime_mbf_x05", "equal_budget"}  # not finetune_.../0, /1, /2
    pick = nets["finetune_onnxruntime_mbf_x05"]
    assert pick.seeds == [2048, 1, 2] and pick.accuracy.values == (0.87, 0.88, 0.89)
    assert pick.role == "searched" and pick.target_runtime == "onnxruntime"
    # side_by_side timed the three seeds' networks at 1.90, 1.91, 1.92 ms (ORT) and 3.8 ms (TFLite): the median
    assert pick.latency_ms == {"onnxruntime": pytest.approx(1.91), "tflite": 3.8}
    assert nets["equal_budget"].role == "reference" and nets["equal_budget"].seeds == [2048]
    assert nets["equal_budget"].latency_ms == {"onnxruntime": 2.05, "tflite": 1.75}


def test_ofa_source_states_the_supernet_plus_fine_tuning_budget_and_labels_the_equal_budget_reference(tmp_path):
    nets = _nets(ofa_record(), SOURCES["ofa_cpu"])
    assert set(nets) == {"finetune_onnxruntime_mbf_x05", "finetune_onnxruntime_07x_mbf_x05", "equal_budget (42 epochs)"}
    assert nets["finetune_onnxruntime_mbf_x05"].rows[0].budget == (
        "42 epochs: 22 supernet + 20 fine-tuning of ofa.finetune")  # the default progressive-shrinking phases: 22
    assert nets["equal_budget (42 epochs)"].rows[0].budget == "42 epochs of celeba299_mbf_cpu"
    # the headline: the pick (3 seeds, 1.91 ms) against the references at least as slow -- the front's and its own
    _seed_record(tmp_path, "reference_front_cpu", REF)
    _write(tmp_path, "ofa_cpu", ofa_record())
    ort = section_headline(tmp_path).split("### onnxruntime")[1].split("### TFLite")[0]
    assert ("| ofa: finetune_onnxruntime_mbf_x05 | onnxruntime | 0.8800 ± 0.0100 | 3 | 1.9100 | closest = strongest: "
            "equal_budget (42 epochs) | 0.8600 | 1 | 2.0500 | 0.93x (side by side: 1.910 / 2.050 ms) | +0.0200 | – | n<3: not a headline | – | 42 epochs: 22 "
            "supernet + 20 fine-tuning of ofa.finetune |") in ort
    row = next(line for line in ort.splitlines() if line.startswith("| ofa: finetune_onnxruntime_mbf_x05 |"))
    assert row.endswith("| 42 epochs of celeba299_mbf_cpu |")  # the reference's budget, stated


def test_tnas_students_are_grouped_per_target_over_seeds_and_compared_with_the_uniform_ones(tmp_path):
    """tnas_cpu.yml: student / uniform are foreach over target x seed; each student timed by its own
    runtime.latency trial (student_latency, uniform_latency)."""
    nets = _nets(tnas_record(), SOURCES["tnas_cpu"])
    assert set(nets) == {"student ratio 0.5", "student ratio 0.4", "uniform ratio 0.5", "uniform ratio 0.4"}
    for name, net in nets.items():
        side = "student" if name.startswith("student") else "uniform"
        ratio = float(name.split()[-1])
        assert net.seeds == [2048, 1, 2] and list(net.accuracy.values) == ACC[(ratio, side)]
        assert net.pair == f"ratio {ratio:g}" and net.target_runtime is None
        assert net.role == ("searched" if side == "student" else "reference")
    assert nets["uniform ratio 0.4"].latency_ms["tflite"] == pytest.approx(1.7)
    # without the source's labels the names still tell the targets apart (the parameters that differ)
    plain = _nets(tnas_record(), RowSource("tnas_cpu", "tnas", steps=("student", "uniform")))
    assert set(plain) == {"student (arch search[0])", "student (arch search[1])", "uniform (uniform_ratio 0.5)",
                          "uniform (uniform_ratio 0.4)"}
    assert plain["uniform (uniform_ratio 0.5)"].seeds == [2048, 1, 2]

    _write(tmp_path, "tnas_cpu", tnas_record())
    md = section_headline(tmp_path)
    own = md.split("### Each method against its own reference")[1]
    a, b = ACC[(0.5, "student")], ACC[(0.5, "uniform")]
    v = verdict(a, b, None, None)
    assert v.label == "better"
    assert (f"| tnas: student ratio 0.5 | uniform ratio 0.5 | {v.searched.mean:.4f} ± {v.searched.std:.4f} | "
            f"3 (2048, 1, 2) | {v.reference.mean:.4f} ± {v.reference.std:.4f} | 3 (2048, 1, 2) | {v.gain:+.4f} | "
            f"{v.p:.3g} | better |") in own
    assert "| tnas: student ratio 0.4 | uniform ratio 0.4 |" in own and "| tie |" in own
    # the students are in the per-runtime comparisons too (target runtime: none); the front is not recorded
    runtimes = md.split("### onnxruntime")[1].split("### Each method")[0]
    assert "| tnas: student ratio 0.5 | – | " in runtimes
    assert "uniform ratio" not in runtimes  # the uniform students are the other side of TNAS's own comparison only
    assert "`ofa_cpu` not recorded; `tnas_cpu` recorded (1 run, pipeline seed None); `enas_cpu` not recorded" in md


def _enas_record() -> dict:
    """enas_cpu.yml's shape: retrain (top arcs, candidates), random_retrain (references, ``params.search.matches``),
    one seed each; side_by_side times all six in one trial."""
    trials, models, lat = [], {}, {}
    for step, role, accs in (("retrain", "candidate", (0.70, 0.69, 0.71)), ("random_retrain", "reference",
                                                                           (0.69, 0.70, 0.68))):
        for i, acc in enumerate(accs):
            out = f"$RUN_DIR/{step}/{i:03d}/train"
            search = {"rank": i + 1} if role == "candidate" else {"matches": 3 - i, "draws": 4}
            trials.append({"step": step, "index": i, "stage": "enas.retrain", "role": role, "status": "SUCCEEDED",
                           "params": {"arch": {"sample": {"op": i, "role": role}}, "search": search, "seed": 2048,
                                      "config": "recipes/configs/celeba299_enas_retrain_cpu.py"},
                           "metrics": {"lfw_acc": acc, "lfw_acc_std": 0.02, "epochs": 20.0, "latency_ms": 0.5,
                                       "output": out}})
            name = f"top{i + 1}" if role == "candidate" else f"random{3 - i}"
            models[name] = f"{out}/last.pt"
            lat[name] = {"onnxruntime": 1.0 + 0.1 * i, "tflite": 2.0 + 0.1 * i}
    trials.append({"step": "side_by_side", "index": 0, "stage": "runtime.latency", "role": "auxiliary",
                   "status": "SUCCEEDED", "params": {"models": models}, "metrics": {"latency_ms": lat}})
    return {"pipeline": "enas_cpu", "seed": 0, "trials": trials, "pending_steps": []}


def test_enas_top_arcs_against_their_matched_random_arcs_one_seed_each(tmp_path):
    nets = _nets(_enas_record(), SOURCES["enas_cpu"])
    assert set(nets) == {"top1", "top2", "top3", "random1", "random2", "random3"}
    assert nets["top2"].target_runtime == "onnxruntime" and nets["top2"].seeds == [2048]
    assert nets["random3"].pair == "3" and nets["random3"].role == "reference"
    assert nets["random3"].latency_ms == {"onnxruntime": 1.0, "tflite": 2.0}  # random_retrain[0] matches top3
    _write(tmp_path, "enas_cpu", _enas_record())
    md = section_headline(tmp_path)
    runtimes, own = md.split("### Each method against its own reference")
    assert "| enas: top1 | onnxruntime |" in runtimes and "random" not in runtimes  # vs the hand-designed front only
    assert "| enas: top1 | random1 | 0.7000 | 1 (2048) | 0.6800 | 1 (2048) | +0.0200 | – | " + FEW_SEEDS in own
    assert "| 1.0000 / 1.2000 | 2.0000 / 2.2000 |" in own
    assert "| enas: top3 | random3 | 0.7100 | 1 (2048) | 0.6900 | 1 (2048) | +0.0200 |" in own


def _enas_record_with_top1_seeds() -> dict:
    """enas_cpu.yml's ``top1_seeds``: the top arc (search rank 1) retrained again with seeds 1 and 2 (trial
    indices 0 and 1 of their own step), not timed again."""
    record = _enas_record()
    top1 = next(t for t in record["trials"] if t["step"] == "retrain" and t["index"] == 0)
    for i, (seed, acc) in enumerate(((1, 0.72), (2, 0.74))):
        params = {**top1["params"], "seed": seed}
        record["trials"].insert(-1, {**top1, "step": "top1_seeds", "index": i, "params": params,
                                     "metrics": {**top1["metrics"], "lfw_acc": acc,
                                                 "output": f"$RUN_DIR/top1_seeds/{i:03d}/train"}})
    return record


def test_the_top_arc_retrained_with_more_seeds_is_one_network_over_its_seeds(tmp_path):
    """top1_seeds' runs join the top arc by its search rank (not their trial index: index 1 is not top2), keep
    its side-by-side latency, and make it a headline row; bench_enas keeps the one-seed comparison apart."""
    from benchmarks.bench_enas import summarise

    nets = _nets(_enas_record_with_top1_seeds(), SOURCES["enas_cpu"])
    assert set(nets) == {"top1", "top2", "top3", "random1", "random2", "random3"}
    assert sorted(nets["top1"].seeds) == [1, 2, 2048] and nets["top2"].seeds == [2048]
    assert nets["top1"].accuracy.mean == pytest.approx(0.72)
    assert nets["top1"].latency_ms == {"onnxruntime": 1.0, "tflite": 2.0}  # side_by_side timed the seed-2048 run
    _seed_record(tmp_path, "reference_front_cpu", REF)
    _write(tmp_path, "enas_cpu", _enas_record_with_top1_seeds())
    runtimes = section_headline(tmp_path).split("### Each method against its own reference")[0]
    assert "| enas: top1 | onnxruntime | 0.7200 ± 0.0200 | 3 | 1.0000 | closest = strongest: big |" in runtimes
    s = summarise(_enas_record_with_top1_seeds())
    assert [(n["step"], n["seed"]) for n in s["top"]] == [("retrain", 2048)] * 3  # the random arcs' seed
    assert [p["top_lfw_acc"] for p in s["pairs"]] == [0.70, 0.69, 0.71]
    assert s["lfw_acc_top_vs_random"]["n"] == [3, 3]
    (seeds,) = s["top_seeds"]
    assert (seeds["rank"], seeds["seeds"], seeds["lfw_acc"]) == (1, [2048, 1, 2], [0.70, 0.72, 0.74])
    assert (seeds["mean"], seeds["std"]) == (pytest.approx(0.72), pytest.approx(0.02))


def _enas_record_every_arc_three_seeds() -> dict:
    """Every arc retrained again with seeds 1 and 2 (enas_cpu.yml's top1_seeds, random1_seeds, top23_seeds,
    random23_seeds): seed 1 adds 0.01 to the arc's seed-2048 accuracy, seed 2 adds 0.02 to top arcs and subtracts
    0.02 from random ones."""
    record = _enas_record()
    for base in [t for t in record["trials"] if t["step"] in ("retrain", "random_retrain")]:
        top = base["role"] == "candidate"
        arc = base["params"]["search"]["rank" if top else "matches"]
        step = ("top" if top else "random") + ("1" if arc == 1 else "23") + "_seeds"
        for seed, delta in ((1, 0.01), (2, 0.02 if top else -0.02)):
            index = sum(t["step"] == step for t in record["trials"])
            record["trials"].insert(-1, {**base, "step": step, "index": index,
                                         "params": {**base["params"], "seed": seed},
                                         "metrics": {**base["metrics"], "lfw_acc": base["metrics"]["lfw_acc"] + delta,
                                                     "output": f"$RUN_DIR/{step}/{index:03d}/train"}})
    return record


def test_with_every_arc_over_three_seeds_top_vs_random_compares_arc_means(tmp_path):
    """Once every arc has the same three seeds, each is a headline row with its own reference over them, and bench_enas
    compares the top-3 with the random arcs by each arc's mean over those seeds (still one network per arc in its
    table and pairs: the seed-2048 run, the one timed side by side)."""
    from benchmarks.bench_enas import summarise
    from benchmarks.summary import section_enas

    record = _enas_record_every_arc_three_seeds()
    nets = _nets(record, SOURCES["enas_cpu"])
    assert {n: sorted(net.seeds) for n, net in nets.items()} == {n: [1, 2, 2048] for n in nets} and len(nets) == 6
    s = summarise(record)
    assert [(n["top"], n["seed"]) for n in s["top"]] == [(1, 2048), (2, 2048), (3, 2048)]
    assert [(n["top"], n["seed"]) for n in s["random"]] == [(1, 2048), (2, 2048), (3, 2048)]
    c = s["lfw_acc_top_vs_random"]
    assert c["seeds"] == [2048, 1, 2] and c["n"] == [3, 3]
    # arc means: top (0.70, 0.69, 0.71) + 0.01; random (0.68, 0.70, 0.69) - 0.01/3
    assert c["mean"] == [pytest.approx(0.71), pytest.approx(0.69 - 0.01 / 3)]
    assert [t["rank"] for t in s["top_seeds"]] == [1, 2, 3] and [t["rank"] for t in s["random_seeds"]] == [1, 2, 3]
    _write(tmp_path, "enas_cpu", record)
    text = section_enas(tmp_path)
    assert "mean ± std over the networks, each network's mean over seeds 2048, 1, 2)" in text
    assert "| LFW acc ± std (seed 2048, over LFW's folds) |" in text  # the table's networks: one run per arc
    own = section_headline(tmp_path).split("### Each method against its own reference")[1]
    assert "| enas: top2 | random2 | 0.7000 ± 0.0100 | 3 (2048, 1, 2) | 0.6967 ± 0.0153 | 3 (2048, 1, 2) | +0.0033 |" in own


def test_without_method_records_the_own_comparisons_say_missing(tmp_path):
    _seed_record(tmp_path, "reference_front_cpu", REF)
    md = section_headline(tmp_path)
    assert "`ofa_cpu` not recorded; `tnas_cpu` not recorded; `enas_cpu` not recorded" in md
    _write(tmp_path, "ofa_cpu", ofa_record())
    own = section_headline(tmp_path).split("### Each method against its own reference")[1]
    assert "_missing: none of these records has a searched network and its reference yet._" in own


@pytest.mark.parametrize("flops, paired", [(10.0, True), (37.9, False)])
def test_a_reference_architecture_timed_beside_the_picks_gives_the_side_by_side_ratio(tmp_path, flops, paired):
    """ofa_cpu.yml's side_by_side times `mbf_x05` untrained (the reference front's recipe) with the picks: the
    headline takes which is slower and the ratio from that run -- only when its MFLOPs are the reference's."""
    record = ofa_record()
    sbs = next(t for t in record["trials"] if t["step"] == "side_by_side")
    names = sbs["metrics"]["latency_ms"]
    sbs["metrics"]["trained"] = {k: k not in ("mbf_x025", "mbf_x05") for k in names}
    sbs["metrics"]["mflops_mbf_x05"] = flops
    _write(tmp_path, "ofa_cpu", record)
    # timed on its own, the front's mbf_x05 (1.5 ms) looks faster than the pick (1.91 ms); beside it, 2.1 ms
    _seed_record(tmp_path, "reference_front_cpu", {s: {"mbf_x05": (acc, 1.5, 1.2)}
                                                   for s, acc in ((2048, 0.875), (1, 0.88), (2, 0.885))})
    ort = section_headline(tmp_path).split("### onnxruntime")[1].split("### TFLite")[0]
    rows = [line for line in ort.splitlines() if line.startswith("| ofa: finetune_onnxruntime_mbf_x05 |")]
    if paired:
        assert any("| strongest: mbf_x05 | 0.8800 ± 0.0050 | 3 | 1.5000 | 0.91x (side by side: 1.910 / 2.100 ms) | "
                   "+0.0000 | 1 | tie | – |" in r for r in rows), rows
    else:  # another network under the name: the separate runs decide, and the front's mbf_x05 dominates
        assert len(rows) == 1 and "mbf_x05 |" not in rows[0].split(" | ")[5], rows
        assert rows[0].split(" | ")[-4] == "mbf_x05", rows  # "dominated by (faster, as accurate)"


def test_a_pick_retrained_from_scratch_is_a_searched_network_at_the_references_budget(tmp_path):
    """ofa_cpu.yml's retrain_<runtime>_07x_mbf_x05: engine.train of the pick's architecture, a foreach over seeds,
    timed by side_by_side_07x -- a searched network of its runtime, named as its step (not as the equal-budget
    reference, the other engine.train of the record), at the reference recipe's 20 epochs."""
    record = with_retrain(ofa_record())
    step = "retrain_onnxruntime_07x_mbf_x05"
    nets = _nets(record, SOURCES["ofa_cpu"])
    pick = nets[step]
    assert pick.role == "searched" and pick.target_runtime == "onnxruntime" and pick.seeds == [2048, 1, 2]
    assert pick.rows[0].budget == "20 epochs of celeba299_mbf_cpu"
    assert pick.latency_ms == {"onnxruntime": pytest.approx(1.31), "tflite": 1.2}
    assert "equal_budget (42 epochs)" in nets and f"{step} (20 epochs)" not in nets


def test_a_fine_tune_timed_only_by_its_own_stage_has_that_runtimes_latency():
    """Before any side-by-side step timed it, an ofa.finetune trial's own measurement (``latency_ms``, a number, in
    the runtime its ``latency`` parameter names) is its latency there, and none elsewhere."""
    record = ofa_record()
    record["trials"] = [t for t in record["trials"] if t["step"] != "side_by_side"]
    for t in record["trials"]:
        if t["stage"] == "ofa.finetune":
            t["params"]["latency"] = {"runtime": "onnxruntime"}
    pick = _nets(record, SOURCES["ofa_cpu"])["finetune_onnxruntime_mbf_x05"]
    assert pick.latency_ms == {"onnxruntime": 1.9, "tflite": None}  # the fixture's stage measurement, 3 seeds
