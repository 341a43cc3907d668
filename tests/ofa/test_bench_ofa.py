"""bench_ofa and summary.section_ofa read the OFA rows from recipes/nni/ofa_cpu.yml's collected record (nothing runs):
searches per runtime, fine-tuned picks over seeds vs their reference's seeds (Welch), the equal-budget reference."""
from __future__ import annotations

import json

import pytest
from scipy.stats import ttest_ind

from benchmarks.bench_ofa import report_rows, summarise, versus
from benchmarks.seed_stats import BETTER, FEW_SEEDS, TIE
from benchmarks.summary import section_ofa

RECIPE = "recipes/configs/celeba299_mbf_cpu.py"
POINTS = {"mbf_x025": {"config": RECIPE, "network_kwargs": {"width_mult": 0.25}},
          "mbf_x05": {"config": RECIPE, "network_kwargs": {"width_mult": 0.5}}}


def _write(results, name, result):
    (results / f"{name}.json").write_text(json.dumps({"benchmark": name, "date": "2026-01-01", "command": "x",
                                                      "result": result}))


def _trial(step, stage, index=0, role="candidate", params=None, metrics=None, arch=None):
    return {"step": step, "index": index, "stage": stage, "role": role, "status": "SUCCEEDED", "params": params or {},
            "arch": arch, "metrics": metrics or {}}


def _record(with_finetunes=True):
    a, b, c = {"s": 1}, {"s": 2}, {"s": 3}
    lut = {"lut": "$RUN_DIR/lut.json"}
    trials = [
        _trial("lut_onnxruntime", "runtime.lut", role="auxiliary", metrics={
            "runtime": "onnxruntime", "table": "$RUN_DIR/lut.json", "entries": 90, "spearman": 0.97, "mape": 0.05,
            "within_10pct": 0.9, "p35_ms": 1.5, "p75_ms": 1.9}),
        _trial("supernet", "ofa.train_supernet", role="auxiliary", params={"config": {"space": "ofa"}},
               metrics={"train_seconds": 120.0}),
        _trial("evaluate", "ofa.evaluate", role="auxiliary", params={"sample": a}, metrics={"lfw_devtest_auc": 0.8}),
        _trial("reference_latency", "runtime.latency", role="reference", params={"models": POINTS}, metrics={
            "latency_ms": {"mbf_x025": {"onnxruntime": 1.0, "tflite": 0.9}, "mbf_x05": {"onnxruntime": 2.0, "tflite": 1.8}},
            "latency_mbf_x025_onnxruntime_ms": 1.0, "latency_mbf_x05_onnxruntime_ms": 2.0,
            "latency_mbf_x025_tflite_ms": 0.9, "latency_mbf_x05_tflite_ms": 1.8}),
        _trial("search_onnxruntime", "ofa.search", 0, "auxiliary",
               {"ranker": "comparator", "bound": 2.0, "bound_scale": 0.7, "cost": lut},
               {"best_cost": 1.45, "search_seconds": 1.0}, arch={"sample": a}),
        _trial("search_onnxruntime", "ofa.search", 1, "auxiliary", {"ranker": "comparator", "bound": 2.0, "cost": lut},
               {"best_cost": 1.95, "search_seconds": 1.0}, arch={"sample": b}),
        _trial("search_onnxruntime", "ofa.search", 2, "auxiliary", {"ranker": "mlp", "bound": 1.5, "cost": lut},
               {"best_cost": 1.4, "search_seconds": 2.0}, arch={"sample": c}),
        {**_trial("search_onnxruntime", "ofa.search", 3, "auxiliary", {"ranker": "comparator", "bound": 1.0, "cost": lut}),
         "status": "FAILED", "error": "InfeasibleConstraintError: no subnet of space 'ofa' has latency <= 1 ms: the "
                                      "smallest reachable is 1.2 ms"},
    ]
    for i, (sample, acc, ms) in enumerate(((a, 0.70, 0.98), (b, 0.75, 1.97), (c, 0.74, 1.41))):
        trials.append(_trial("final_onnxruntime", "ofa.evaluate", i, params={"sample": sample, "export": True},
                             metrics={"lfw_acc": acc, "lfw_acc_std": 0.01, "latency_ms": ms, "mflops": 60.0 + i}))
    models = dict(POINTS)
    lat = {"mbf_x025": {"onnxruntime": 1.1, "tflite": 0.95}, "mbf_x05": {"onnxruntime": 2.1, "tflite": 1.7}}
    if with_finetunes:
        for step, sample, accs in (("finetune_onnxruntime_mbf_x05", b, (0.87, 0.88, 0.89)),
                                   ("finetune_onnxruntime_07x_mbf_x05", a, (0.80,))):
            for i, (seed, acc) in enumerate(zip((2048, 1, 2), accs)):
                out = f"$RUN_DIR/{step}/{i:03d}/train"
                trials.append(_trial(step, "ofa.finetune", i, params={"sample": sample, "seed": seed}, metrics={
                    "lfw_acc": acc, "lfw_acc_std": 0.02, "output": out, "epochs": 20, "train_seconds": 600.0,
                    "mflops": 70.0, "latency_ms": 1.9}))
                models[f"ofa_{step[9:]}_seed{seed}"] = f"{out}/last.pt"
                lat[f"ofa_{step[9:]}_seed{seed}"] = {"onnxruntime": (1.9 if "07x" not in step else 1.4) + 0.01 * i,
                                                     "tflite": 3.8}
        trials.append(_trial("equal_budget", "engine.train", role="reference",
                             params={"config": RECIPE, "network_kwargs": {"width_mult": 0.5}, "num_epoch": 42, "seed": 2048},
                             metrics={"lfw_acc": 0.86, "lfw_acc_std": 0.02, "epochs": 42, "train_seconds": 3600.0,
                                      "output": "$RUN_DIR/equal_budget/000/train", "mflops": 37.9}))
        models["equal_budget"] = "$RUN_DIR/equal_budget/000/train/last.pt"
        lat["equal_budget"] = {"onnxruntime": 2.05, "tflite": 1.75}
    trials.append(_trial("side_by_side", "runtime.latency", role="auxiliary", params={"models": models},
                         metrics={"latency_ms": lat}))
    return {"pipeline": "ofa_cpu", "trials": trials, "pending_steps": [] if with_finetunes else ["search_tflite"]}


def with_retrain(record: dict, runtime: str = "onnxruntime", accs=(0.85, 0.86, 0.855)) -> dict:
    """``record`` with ofa_cpu.yml's ``retrain_<runtime>_07x_mbf_x05``: the pick's architecture trained from scratch
    (engine.train, a foreach over seeds), every seed's network timed by the side-by-side step."""
    timing = next(t for t in record["trials"] if t["step"] == "side_by_side")
    step = f"retrain_{runtime}_07x_mbf_x05"
    for i, (seed, acc) in enumerate(zip((2048, 1, 2), accs)):
        out = f"$RUN_DIR/{step}/{i:03d}/train"
        record["trials"].append(_trial(step, "engine.train", i, params={"config": RECIPE, "arch": {"sample": {"s": 1}},
                                                                        "seed": seed},
                                       metrics={"lfw_acc": acc, "lfw_acc_std": 0.02, "epochs": 20, "output": out,
                                                "mflops": 32.3}))
        name = f"ofa_{runtime}_07x_mbf_x05_retrain_seed{seed}"
        timing["params"]["models"][name] = f"{out}/last.pt"
        timing["metrics"]["latency_ms"][name] = {"onnxruntime": 1.3 + 0.01 * i, "tflite": 1.2}
    return record


def _front(results):
    """The reference front's record with three seed runs (``runs``, as benchmarks.collect_pipeline merges them)."""
    runs = {}
    for seed, acc in ((2048, 0.85), (1, 0.84), (2, 0.845)):
        runs[str(seed)] = {"seed": seed, "pending_steps": [], "trials": [
            {"step": "mbf_x05", "stage": "engine.train", "status": "SUCCEEDED", "params": {"config": RECIPE, "seed": seed},
             "metrics": {"lfw_acc": acc}},
            {"step": "mbf_x025", "stage": "engine.train", "status": "SUCCEEDED",
             "params": {"config": RECIPE, "network_kwargs": {"width_mult": 0.25}, "seed": seed},
             "metrics": {"lfw_acc": acc - 0.01}}]}
    first = runs["2048"]
    _write(results, "reference_front_cpu", {"pipeline": "reference_front_cpu", "seed": 2048, "seeds": [2048, 1, 2],
                                            "trials": first["trials"], "pending_steps": [], "runs": runs})


def test_fine_tuned_picks_are_compared_over_seeds_with_welch(tmp_path):
    _front(tmp_path)
    s = summarise(_record(), tmp_path)
    ort = s["runtimes"]["onnxruntime"]
    assert [(e["ranker"], e["bound_from"]) for e in ort["searches"]] == [
        ("comparator", "0.7x mbf_x05"), ("comparator", "mbf_x05"), ("mlp", "p35")]
    assert ort["searches"][0]["bound_ms"] == pytest.approx(1.4) and ort["searches"][0]["bound_reference"] == "mbf_x05"
    # the search under x0.25's latency found no subnet: kept with its message, nothing fine-tuned from it
    (failed,) = ort["failed"]
    assert failed["bound_from"] == "mbf_x025" and "smallest reachable is 1.2 ms" in failed["error"]
    # the reference points: timed with the picks (side_by_side), accuracy over the reference front's seeds
    assert s["references"]["mbf_x05"]["latency_ms"] == {"onnxruntime": 2.1, "tflite": 1.7}
    assert s["references"]["mbf_x05"]["lfw_acc"]["values"] == [0.85, 0.84, 0.845]
    x05, x075 = sorted(ort["finetuned"], key=lambda p: p["step"] != "finetune_onnxruntime_mbf_x05")
    assert x075["search"] == "comparator under 0.7x mbf_x05" and x075["reference"] == "mbf_x05"
    assert x05["seeds"] == [2048, 1, 2] and x05["lfw_acc"]["mean"] == pytest.approx(0.88)
    assert x05["lfw_acc"]["std"] == pytest.approx(0.01)
    expected = ttest_ind([0.87, 0.88, 0.89], [0.85, 0.84, 0.845], equal_var=False)
    vs = x05["vs_reference"]
    assert vs["p"] == pytest.approx(expected.pvalue) and vs["p"] < 0.05 and vs["verdict"] == BETTER  # >= +1 point
    assert vs["difference"] == pytest.approx(0.88 - 0.845)
    assert x05["latency_ms"]["onnxruntime"] == pytest.approx(1.91)  # median over the seeds' side-by-side times
    assert vs["latency_ratio"] == pytest.approx(1.91 / 2.1)
    # one seed on one side: no test, said so
    assert x075["vs_reference"]["p"] is None and x075["vs_reference"]["verdict"] == FEW_SEEDS
    assert x075["vs_reference"]["latency_ratio"] == pytest.approx(1.4 / 2.1)
    eq = s["equal_budget"]
    assert eq["epochs"] == 42 and eq["supernet_epochs"] == 22 and eq["latency_ms"]["onnxruntime"] == 2.05
    versus = {v["pick"]: v for v in eq["vs_picks"]["onnxruntime"]}
    assert versus["comparator under mbf_x05"]["difference"] == pytest.approx(0.88 - 0.86)
    assert versus["comparator under mbf_x05"]["latency_ratio"] == pytest.approx(1.91 / 2.05)
    rows = {r["network"]: r for r in _rows(tmp_path, _record())}
    ft = rows["ofa [onnxruntime] comparator under mbf_x05, fine-tuned"]
    assert ft["lfw_acc"] == pytest.approx(0.88) and "over 3 seed(s)" in ft["budget"]
    assert rows['equal_budget (mbf {"width_mult": 0.5})']["lfw_acc"] == 0.86


def _rows(results, record):
    _write(results, "ofa_cpu", record)
    return report_rows(results)


def test_versus_applies_the_issue_rule():
    assert versus([0.85, 0.86, 0.84], [0.85, 0.851, 0.849], 1.0, 1.0)["verdict"] == TIE
    assert versus([0.80, 0.81, 0.79], [0.85, 0.86, 0.84], 1.0, 1.0)["verdict"] == "worse"
    assert versus([0.85, 0.85, 0.848], [0.85, 0.852, 0.849], 0.7, 1.0)["verdict"] == "as accurate, faster"
    one = versus([0.85], [0.84, 0.85, 0.86], 1.0, 1.0)
    assert one["p"] is None and one["verdict"] == FEW_SEEDS and one["difference"] == pytest.approx(0.0)


def test_section_ofa_renders_seeds_p_values_and_missing_rows(tmp_path):
    _front(tmp_path)
    _write(tmp_path, "ofa_cpu", _record())
    md = section_ofa(tmp_path)
    assert "| OFA comparator under mbf_x05, fine-tuned | 0.8800 ± 0.0100 (n=3) | mbf_x05 | 0.8450 ± 0.0050 (n=3) |" in md
    assert "| better |" in md and f"| {FEW_SEEDS} |" in md
    assert "| equal_budget (seed 2048, 42 epochs) | 0.8600 ± 0.0200 | 2.0500 | 1.7500 |" in md and "Supernet: 22 epochs" in md
    assert "| mbf_x05 | 0.8450 ± 0.0050 (n=3) | 2.1000 | 1.7000 |" in md
    assert ("Search comparator under mbf_x025 (1.0000 ms): no subnet -- InfeasibleConstraintError: no subnet of space "
            "'ofa' has latency <= 1 ms") in md
    # before the fine-tunings and the equal-budget training are recorded: "missing", not blank
    _write(tmp_path, "ofa_cpu", _record(with_finetunes=False))
    md = section_ofa(tmp_path)
    assert "Fine-tuned picks: missing" in md and "missing (the equal_budget step has not been recorded yet)" in md
    assert "Not run yet: search_tflite" in md
    empty = tmp_path / "none"
    empty.mkdir()
    assert "_missing: `benchmarks/results/ofa_cpu.json`" in section_ofa(empty)


def test_a_pick_retrained_from_scratch_is_its_own_row_against_the_same_reference(tmp_path):
    """retrain_<runtime>_07x_mbf_x05 (engine.train of the pick's arch): matched to its search by the architecture,
    compared with the reference that bounded it over seeds, reported beside the fine-tuned rows."""
    _front(tmp_path)
    record = with_retrain(_record())
    s = summarise(record, tmp_path)
    (re,) = s["runtimes"]["onnxruntime"]["retrained"]
    assert re["step"] == "retrain_onnxruntime_07x_mbf_x05" and re["search"] == "comparator under 0.7x mbf_x05"
    assert re["seeds"] == [2048, 1, 2] and re["lfw_acc"]["mean"] == pytest.approx(0.855)
    assert re["latency_ms"]["onnxruntime"] == pytest.approx(1.31)
    assert re["vs_reference"]["reference"] == "mbf_x05" and re["vs_reference"]["latency_ratio"] == pytest.approx(1.31 / 2.1)
    assert len(s["runtimes"]["onnxruntime"]["finetuned"]) == 2  # the equal-budget engine.train is not a retrain
    _write(tmp_path, "ofa_cpu", record)
    md = section_ofa(tmp_path)
    assert "| OFA comparator under 0.7x mbf_x05, retrained from scratch | 0.8550 ± 0.0050 (n=3) | mbf_x05 |" in md
    rows = {r["network"]: r for r in report_rows(tmp_path)}
    row = rows["ofa [onnxruntime] comparator under 0.7x mbf_x05, retrained from scratch"]
    assert row["budget"].startswith("20.000 epochs from scratch") and row["lfw_acc"] == pytest.approx(0.855)


def with_ablation(record: dict) -> dict:
    """``record`` with ofa_cpu.yml's ablation: the pick's architecture in 4 variants (auxiliary engine.train trials
    with the pick's arch dict, like the retrains) and MobileFaceNet x0.5 at the same short budget."""
    relu = {"stage_activations": ["relu"] * 5, "stem_activation": "relu", "head_activation": "relu"}
    for i, (over, loss) in enumerate(((({}), 30.0), ({"stage_se": [False] * 5}, 29.0), (relu, 25.0),
                                       ({**relu, "stage_se": [False] * 5}, 24.0))):
        record["trials"].append(_trial("ablation_07x", "engine.train", i, role="auxiliary",
                                       params={"config": RECIPE, "arch": {"sample": {"s": 1}}, "seed": 2048,
                                               "network_kwargs": {"space_config": over}, "num_epoch": 6},
                                       metrics={"loss": loss, "lfw_acc": 0.7 + i / 100, "lfw_acc_std": 0.01,
                                                "epochs": 6, "mflops": 32.0 - i, "train_seconds": 600}))
    record["trials"].append(_trial("ablation_reference", "engine.train", 0, role="auxiliary",
                                   params={"config": RECIPE, "network_kwargs": {"width_mult": 0.5}, "seed": 2048,
                                           "num_epoch": 6},
                                   metrics={"loss": 20.0, "lfw_acc": 0.78, "lfw_acc_std": 0.01, "epochs": 6,
                                            "mflops": 37.9, "train_seconds": 540}))
    return record


def test_the_ablation_is_its_own_table_and_never_a_retrained_pick(tmp_path):
    _front(tmp_path)
    record = with_ablation(with_retrain(_record()))
    s = summarise(record, tmp_path)
    (re,) = s["runtimes"]["onnxruntime"]["retrained"]  # the auxiliary ablation trials are not retrains of the pick
    assert re["step"] == "retrain_onnxruntime_07x_mbf_x05" and re["seeds"] == [2048, 1, 2]
    assert [(r["network"], r["loss"]) for r in s["ablation"]] == [
        ("pick as searched", 30.0), ("pick, no SE", 29.0), ("pick, ReLU for h-swish", 25.0),
        ("pick, ReLU for h-swish, no SE", 24.0), ("MobileFaceNet x0.5", 20.0)]
    _write(tmp_path, "ofa_cpu", record)
    md = section_ofa(tmp_path)
    assert "| pick, ReLU for h-swish, no SE | 24.0000 | 0.7300 ± 0.0100 | 29.0000 |" in md
    assert "| MobileFaceNet x0.5 | 20.0000 | 0.7800 ± 0.0100 | 37.9000 |" in md
    _write(tmp_path, "ofa_cpu", _record())
    assert "the ablation_07x / ablation_reference steps have not been recorded yet" in section_ofa(tmp_path)


def test_the_findings_say_what_share_of_the_loss_gap_each_variant_closes(tmp_path):
    from benchmarks.summary import _finding_ofa_ablation

    _write(tmp_path, "ofa_cpu", _record())
    assert _finding_ofa_ablation(tmp_path) == []  # not recorded yet: no sentence
    _write(tmp_path, "ofa_cpu", with_ablation(_record()))
    (line,) = _finding_ofa_ablation(tmp_path)
    assert line.startswith("**OFA ablation** (6 epochs from scratch, seed 2048, one run each): final training loss "
                           "of the onnxruntime 0.7x pick as searched 30.00 against MobileFaceNet x0.5's 20.00; ")
    assert "no SE 29.00, 10% of the gap; ReLU for h-swish 25.00, 50% of the gap; ReLU for h-swish, no SE 24.00, 60%" in line
    assert line.endswith("LFW: pick as searched 0.7000, no SE 0.7100, ReLU for h-swish 0.7200, ReLU for h-swish, no SE "
                         "0.7300, MobileFaceNet x0.5 0.7800.")  # a variant closes 60%: no "most of the gap stays"
    record = with_ablation(_record())
    for t in record["trials"]:
        if t["step"] == "ablation_07x":
            t["metrics"]["loss"] = 30.0 - t["index"] * 0.5  # at best 1.5 of 10: 85% of the gap stays
    _write(tmp_path, "ofa_cpu", record)
    (line,) = _finding_ofa_ablation(tmp_path)
    assert line.endswith("Most of the gap (at least 85%) stays without SE and h-swish: it lies in the layout the "
                         "variants share (depths, widths, expand ratios, head).")
    for t in record["trials"]:
        if t["step"] == "ablation_07x" and t["index"] == 1:
            t["metrics"]["loss"] = 30.01  # no lower than the pick's: none of the gap, not "-0%"
    _write(tmp_path, "ofa_cpu", record)
    (line,) = _finding_ofa_ablation(tmp_path)
    assert "no SE 30.01, none of the gap;" in line and "-0%" not in line


def test_a_pick_is_compared_with_the_reference_timed_in_its_own_rounds(tmp_path):
    """Two side-by-side steps timed the reference (as ofa_cpu.yml's side_by_side_07x and side_by_side_tflite_07x):
    a pick's latency ratio uses the reference's time from the step that timed that pick, not from the step that
    timed the most networks (the reference points' latency)."""
    _front(tmp_path)
    record = _record()
    big = next(t for t in record["trials"] if t["step"] == "side_by_side")
    own = {"mbf_x05": {"onnxruntime": 2.4, "tflite": 1.6}}
    models = {"mbf_x05": POINTS["mbf_x05"]}
    for seed in (2048, 1, 2):  # the 1x pick moves from the big step to its own, smaller one
        name = f"ofa_onnxruntime_mbf_x05_seed{seed}"
        models[name] = big["params"]["models"].pop(name)
        own[name] = {"onnxruntime": 1.8, "tflite": 3.0}
        del big["metrics"]["latency_ms"][name]
    for extra in ("mbf_x075", "mbf_x1"):  # the big step still times more networks (the front, as in ofa_cpu.yml)
        big["params"]["models"][extra] = {"config": RECIPE, "network_kwargs": {"width_mult": 0.75}}
        big["metrics"]["latency_ms"][extra] = {"onnxruntime": 3.0, "tflite": 3.0}
    record["trials"].append(_trial("side_by_side_x05", "runtime.latency", role="auxiliary", params={"models": models},
                                   metrics={"latency_ms": own}))
    s = summarise(record, tmp_path)
    assert s["references"]["mbf_x05"]["latency_ms"]["onnxruntime"] == 2.1  # the step timing the most networks
    picks = {p["step"]: p for p in s["runtimes"]["onnxruntime"]["finetuned"]}
    x05, x075 = picks["finetune_onnxruntime_mbf_x05"], picks["finetune_onnxruntime_07x_mbf_x05"]
    assert x05["latency_ms"]["onnxruntime"] == pytest.approx(1.8)
    assert x05["vs_reference"]["reference_ms"] == pytest.approx(2.4)  # beside it, in its own rounds
    assert x05["vs_reference"]["latency_ratio"] == pytest.approx(1.8 / 2.4)
    assert x075["vs_reference"]["reference_ms"] == pytest.approx(2.1)  # the 0.7x pick was timed in the big step


def test_an_equal_budget_network_not_timed_yet_takes_its_architectures_times_from_the_picks_rounds(tmp_path):
    """equal_budget trained, the last side-by-side step not run: its architecture (the reference point of the same
    recipe and kwargs, mbf_x05) was timed untrained beside each pick; the comparison uses those rounds."""
    _front(tmp_path)
    record = _record()
    timing = next(t for t in record["trials"] if t["step"] == "side_by_side")
    del timing["params"]["models"]["equal_budget"], timing["metrics"]["latency_ms"]["equal_budget"]
    eq = summarise(record, tmp_path)["equal_budget"]
    assert eq["architecture"] == "mbf_x05" and eq["latency_from"] == "mbf_x05"
    assert eq["latency_ms"] == {"onnxruntime": 2.1, "tflite": 1.7}
    versus = {v["pick"]: v for v in eq["vs_picks"]["onnxruntime"]}
    assert versus["comparator under mbf_x05"]["equal_budget_ms"] == 2.1
    assert versus["comparator under mbf_x05"]["latency_ratio"] == pytest.approx(1.91 / 2.1)
    _write(tmp_path, "ofa_cpu", record)
    md = section_ofa(tmp_path)
    assert "| equal_budget (seed 2048, 42 epochs) | 0.8600 ± 0.0200 | 2.1000 | 1.7000 |" in md
    assert "Its times are its architecture's (mbf_x05, untrained, timed beside the picks" in md
    rows = {r["network"]: r for r in report_rows(tmp_path)}
    assert rows['equal_budget (mbf {"width_mult": 0.5})']["budget"].endswith("(times: its architecture, mbf_x05, untrained)")
    # a network of another recipe has no such stand-in: its times stay missing
    eq_trial = next(t for t in record["trials"] if t["step"] == "equal_budget")
    eq_trial["params"]["network_kwargs"] = {"width_mult": 0.75}
    eq = summarise(record, tmp_path)["equal_budget"]
    assert eq["architecture"] is None and eq["latency_ms"] == {}


def test_the_findings_say_what_the_equal_budget_reference_gives(tmp_path):
    from benchmarks.summary import _finding_ofa_equal_budget

    _front(tmp_path)
    _write(tmp_path, "ofa_cpu", _record())
    (text,) = _finding_ofa_equal_budget(tmp_path)
    assert text.startswith("**OFA at equal budget**: mbf_x05 trained once for 42 epochs, as many as a fine-tuned pick "
                           "saw (22 supernet + 20 fine-tuning), seed 2048: LFW 0.8600, against 0.8450 ± 0.0050 over "
                           "its 3 reference-front seeds at the protocol's budget (+0.0150: the longer budget raised "
                           "its accuracy here)")
    assert "onnxruntime comparator under mbf_x05 +0.0200 at 0.93x its latency" in text
    assert "onnxruntime comparator under 0.7x mbf_x05 -0.0600" in text
    _write(tmp_path, "ofa_cpu", _record(with_finetunes=False))
    assert _finding_ofa_equal_budget(tmp_path) == []
