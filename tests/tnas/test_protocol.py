"""The TNAS protocol comparison (issue 16, item 3): the shape of ``recipes/nni/tnas_cpu.yml`` (two FLOPs targets,
searched vs uniform students over the same seeds, same teacher and budget, every student timed) and of its
test-scale mirror ``tnas_test.yml``; ``facenas nni check`` on the items of a literal ``foreach``; the reader
``benchmarks.bench_tnas_table3`` and ``summary.section_tnas`` on a synthetic record."""
from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
NNI = REPO / "recipes" / "nni"


def _steps(name: str) -> dict[str, dict]:
    from facenas.adapters.nni.variables import substitute_variables

    data = yaml.safe_load((NNI / name).read_text())
    return {s["name"]: s for s in substitute_variables(data["tuner"]["classArgs"], environ={})["steps"]}


def _check(path: Path):
    from facenas.adapters.nni.check import check_experiment_file

    return check_experiment_file(path)


@pytest.mark.parametrize("name", ["tnas_cpu.yml", "tnas_test.yml"])
def test_file_compares_searched_and_uniform_students_per_target_over_the_same_seeds(name):
    assert _check(NNI / name).ok
    steps = _steps(name)
    assert [s for s in steps if s not in ("data", "side_by_side")] == ["teacher", "search", "student", "uniform",
                                                                       "student_latency", "uniform_latency"]
    assert steps["teacher"]["stage"] == "engine.train" and steps["teacher"]["role"] == "reference"
    search = steps["search"]
    assert search["stage"] == "tnas.search" and search["role"] == "auxiliary"
    ratios = [item["ratio"] for item in search["foreach"]]
    assert len(ratios) == 2 and len(set(ratios)) == 2 and search["params"]["target_width_ratio"] == "${item.ratio}"
    student, uniform = steps["student"], steps["uniform"]
    assert student["stage"] == uniform["stage"] == "tnas.train"
    assert student.get("role", "candidate") == "candidate" and uniform["role"] == "reference"
    # every target x the same seeds on both sides; a searched student trains its own target's search
    pairs = sorted((i["ratio"], i["seed"]) for i in student["foreach"])
    assert pairs == sorted((i["ratio"], i["seed"]) for i in uniform["foreach"])
    seeds = {r: sorted(s for q, s in pairs if q == r) for r in ratios}
    assert len(seeds[ratios[0]]) == 3 and seeds[ratios[0]] == seeds[ratios[1]]
    for item in student["foreach"]:
        k = ratios.index(item["ratio"])
        assert item["arch"] == f"${{search[{k}].result.arch_path}}" and item["sample"] == f"${{search[{k}].arch.sample}}"
    # same teacher, recipe, budget and seeds: the parameters differ only in the network
    def common(params):
        return {k: v for k, v in params.items() if k not in ("arch", "sample", "uniform_ratio", "space")}

    assert common(student["params"]) == common(uniform["params"])
    p = student["params"]
    assert p["distill"] == {"teacher": search["params"]["teacher"]}
    assert p.get("seed", p["config"].get("seed") if isinstance(p["config"], dict) else None) == "${item.seed}"
    assert uniform["params"]["uniform_ratio"] == "${item.ratio}"
    # every student timed in both runtimes, one thread
    for step, source in (("student_latency", "student"), ("uniform_latency", "uniform")):
        lat = steps[step]
        assert lat["stage"] == "runtime.latency" and lat["foreach"] == f"${{{source}[*].result.output}}"
        assert lat["params"]["model"] == "${item}/last.pt" and lat["params"]["threads"] == 1
        assert sorted(lat["params"]["runtimes"]) == ["onnxruntime", "tflite"]


def test_gpu_file_has_the_same_shape():
    steps = _steps("tnas_gpu.yml")
    assert list(steps) == ["teacher", "search", "student", "uniform", "student_latency", "uniform_latency"]
    assert [steps[s].get("role") for s in ("teacher", "uniform")] == ["reference", "reference"]
    assert sorted((i["ratio"], i["seed"]) for i in steps["student"]["foreach"]) == \
        sorted((i["ratio"], i["seed"]) for i in steps["uniform"]["foreach"]) == \
        sorted((r, s) for r in (0.5, 0.4) for s in (2048, 1, 2))


def test_cpu_file_runs_the_protocol_a_long_search_and_the_uniform_flops_of_each_target():
    from facenas.config import load_config_module
    from facenas.plugins.engine import TrainConfig
    from facenas.plugins.tnas.search import TnasSearchConfig, resolve_target
    from facenas.plugins.tnas.space import TnasSpace

    steps = _steps("tnas_cpu.yml")
    search = load_config_module(str(REPO / steps["search"]["params"]["config"]), TnasSearchConfig)
    assert search.num_epoch >= 6  # long enough for the distribution to leave uniform widths (issue 16)
    student = load_config_module(str(REPO / steps["student"]["params"]["config"]), TrainConfig)
    assert student.num_epoch == 20 and student.test_targets == ["lfw"]
    # the uniform student of a ratio has exactly the FLOPs the search of that ratio targets
    space = TnasSpace(**steps["uniform"]["params"]["space"])
    assert steps["uniform"]["params"]["space"] == search.space
    for item in steps["search"]["foreach"]:
        cfg = copy.deepcopy(search)
        cfg.target_width_ratio = item["ratio"]
        assert resolve_target(space, cfg) == space.flops(space.uniform(item["ratio"]))
    assert {i["seed"] for i in steps["uniform"]["foreach"]} == {2048, 1, 2}


def _broken(tmp_path: Path, change) -> Path:
    data = yaml.safe_load((NNI / "tnas_cpu.yml").read_text())
    data["trialCodeDirectory"] = str(REPO)
    data["searchSpaceFile"] = str(NNI / data["searchSpaceFile"])
    change(data["tuner"]["classArgs"]["steps"])
    path = tmp_path / "tnas_cpu.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_check_reads_each_foreach_item_and_refuses_a_ratio_that_is_no_width_candidate(tmp_path):
    def bad_uniform(steps):
        steps[3]["foreach"][4]["ratio"] = 0.35

    report = _check(_broken(tmp_path, bad_uniform))
    assert len(report.problems) == 1, report.problems
    assert "step 3 'uniform' params (foreach item 4)" in report.problems[0]
    assert "ratio 0.35 is not a width candidate" in report.problems[0]

    def bad_target(steps):
        steps[1]["foreach"][1]["ratio"] = 0.2

    report = _check(_broken(tmp_path, bad_target))
    assert len(report.problems) == 1 and "step 1 'search' params (foreach item 1)" in report.problems[0]

    def bad_seed(steps):
        steps[2]["foreach"][0]["seed"] = "one"

    report = _check(_broken(tmp_path, bad_seed))
    assert len(report.problems) == 1 and "'seed'" in report.problems[0] and "(foreach item 0)" in report.problems[0]


# -- the reader and the summary section ------------------------------------------------------------------
SAMPLES = {0.5: {"stem/width_ratio": 0.4, "stage1/width_ratio": 0.7}, 0.4: {"stem/width_ratio": 0.3,
                                                                             "stage1/width_ratio": 0.5}}
#: per target and side: LFW accuracy of seeds 2048, 1, 2
ACC = {(0.5, "student"): [0.861, 0.866, 0.864], (0.5, "uniform"): [0.848, 0.850, 0.846],
       (0.4, "student"): [0.840, 0.852, 0.830], (0.4, "uniform"): [0.842, 0.838, 0.845]}
MFLOPS = {0.5: 54.59, 0.4: 35.80}


def _trial(step, stage, index, role, params, metrics, arch=None):
    return {"step": step, "index": index, "stage": stage, "role": role, "status": "SUCCEEDED", "params": params,
            "arch": arch, "metrics": metrics}


def synthetic_record() -> dict:
    trials = [_trial("teacher", "engine.train", 0, "reference", {"seed": 2048},
                     {"lfw_acc": 0.87, "lfw_acc_std": 0.01, "mflops": 214.3, "epochs": 20.0})]
    for k, ratio in enumerate((0.5, 0.4)):
        per_epoch = [{"epoch": e, "arch_entropy_norm": 1.0 - 0.1 * e, "expected_mflops": MFLOPS[ratio] * (1.3 - 0.05 * e),
                      "argmax_mflops": MFLOPS[ratio] * 1.01, "argmax_final": e >= 5} for e in range(1, 9)]
        trials.append(_trial("search", "tnas.search", k, "auxiliary", {"target_width_ratio": ratio},
                             {"target_mflops": MFLOPS[ratio], "mflops": MFLOPS[ratio] * 1.01, "within_tolerance": True,
                              "argmax_mflops": MFLOPS[ratio] * 1.01, "repair_moves": 0, "epochs": 8.0,
                              "per_epoch": per_epoch}, arch={"sample": SAMPLES[ratio]}))
    i = 0
    for ratio in (0.5, 0.4):
        for seed, acc_s, acc_u in zip((2048, 1, 2), ACC[(ratio, "student")], ACC[(ratio, "uniform")]):
            for step, acc in (("student", acc_s), ("uniform", acc_u)):
                out = f"$RUN_DIR/{step}/{i:03d}/train"
                params = {"seed": seed, "distill": {"teacher": "$RUN_DIR/teacher/000/train/best.pt"}}
                if step == "student":
                    params.update(arch=f"$RUN_DIR/search/{(0.5, 0.4).index(ratio):03d}/search/arch.json",
                                  sample=SAMPLES[ratio])
                else:
                    params.update(uniform_ratio=ratio, space={"base": "r18"})
                trials.append(_trial(step, "tnas.train", i, "candidate" if step == "student" else "reference", params,
                                     {"lfw_acc": acc, "lfw_acc_std": 0.02, "mflops": MFLOPS[ratio], "epochs": 20.0,
                                      "output": out}, arch={"sample": SAMPLES[ratio]} if step == "student" else None))
                ort, tfl = (1.0 + ratio, 1.2 + ratio) if step == "student" else (0.9 + ratio, 1.3 + ratio)
                trials.append(_trial(f"{step}_latency", "runtime.latency", i, "auxiliary", {"model": f"{out}/last.pt"},
                                     {"latency_onnxruntime_ms": ort + seed / 1e5, "latency_tflite_ms": tfl}))
            i += 1
    return {"pipeline": "tnas_cpu", "trials": trials, "pending_steps": []}


def test_reader_compares_each_target_over_seeds_with_welchs_test():
    from scipy.stats import ttest_ind

    from benchmarks.bench_tnas_table3 import summarise

    s = summarise(synthetic_record())
    assert list(s["targets"]) == ["ratio 0.5", "ratio 0.4"] and s["accuracy"] == "lfw_acc"
    for ratio, verdict in ((0.5, "better"), (0.4, "tie")):
        t = s["targets"][f"ratio {ratio}"]
        c = t["comparison"]
        a, b = ACC[(ratio, "student")], ACC[(ratio, "uniform")]
        assert [r["seed"] for r in t["searched"]] == [1, 2, 2048] == [r["seed"] for r in t["uniform"]]
        assert c["searched"]["mean"] == pytest.approx(statistics.fmean(a))
        assert c["searched"]["std"] == pytest.approx(statistics.stdev(a)) and c["uniform"]["n"] == 3
        assert c["welch_p"] == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue)
        assert c["verdict"] == verdict and c["epochs"] == [20.0]
        assert c["latency_ms"]["searched"]["tflite"] == pytest.approx(1.2 + ratio)
        # over seeds: the median of the seeds' timings (1, 2, 2048 x 1e-5 ms above 0.9 + ratio), not their mean
        assert c["latency_ms"]["uniform"]["onnxruntime"] == pytest.approx(0.9 + ratio + 2 / 1e5)
        assert t["search"]["stable_from"] == 5 and t["search"]["uniform_widths"] is False
    assert s["targets"]["ratio 0.5"]["comparison"]["welch_p"] < 0.05 < s["targets"]["ratio 0.4"]["comparison"]["welch_p"]


def test_reader_latency_over_seeds_is_the_headlines():
    """bench_tnas_table3 and the headline (benchmarks.seed_rows.networks) give a side's latency over seeds by one
    definition: for every target and side, the same numbers (the median of the seeds' timings)."""
    from benchmarks.bench_tnas_table3 import summarise
    from benchmarks.seed_rows import ROW_SOURCES, networks, pipeline_rows

    record = synthetic_record()
    for t in record["trials"]:  # seeds far apart in time: a mean and a median differ in both runtimes
        if t["stage"] == "runtime.latency" and t["index"] in (1, 4):
            t["metrics"] = {k: v + 1.0 for k, v in t["metrics"].items()}
    source = next(s for s in ROW_SOURCES if s.record == "tnas_cpu")
    nets = {n.name: n for n in networks(pipeline_rows("tnas_cpu", record, source))}
    for key, t in summarise(record)["targets"].items():
        for side, step in (("searched", "student"), ("uniform", "uniform")):
            got = t["comparison"]["latency_ms"][side]
            assert got == nets[f"{step} {key}"].latency_ms
            times = sorted(r["latency_ms"]["tflite"] for r in t[side])
            assert got["tflite"] == pytest.approx(times[1]) != pytest.approx(statistics.fmean(times))


def _write(results: Path, name: str, result: dict) -> None:
    (results / f"{name}.json").write_text(json.dumps({"benchmark": name, "date": "2026-12-06", "command": "x",
                                                      "result": result}))


def test_section_is_missing_until_recorded_then_shows_each_target(tmp_path):
    from benchmarks.summary import section_tnas

    _write(tmp_path, "bench_tnas_table3", {"steps": {"search": {"epochs": 2.0}, "tnas_fkd": {"epochs": 4.0}},
                                           "table": [{"method": "tnas_fkd", "mflops": 53.99, "lfw_acc": 0.8468,
                                                      "lfw_acc_std": 0.0181}]})
    md = section_tnas(tmp_path)
    assert "_missing: `benchmarks/results/tnas_cpu.json` has not been recorded" in md
    assert "2-epoch search, 4-epoch students, one seed" in md and "| tnas_fkd | 53.9900 | 0.8468 ± 0.0181 |" in md
    _write(tmp_path, "tnas_cpu", synthetic_record())
    md = section_tnas(tmp_path)
    assert "_missing" not in md
    a, b = ACC[(0.5, "student")], ACC[(0.5, "uniform")]
    row = next(line for line in md.splitlines() if line.startswith("| ratio 0.5 (54.6 MFLOPs) | searched"))
    assert f"{statistics.fmean(a):.4f} ± {statistics.stdev(a):.4f} (n=3)" in row and "| better |" in row
    assert f"| {statistics.fmean(a) - statistics.fmean(b):.4f} |" in row and "| 1, 2, 2048 |" in row
    row = next(line for line in md.splitlines() if line.startswith("| ratio 0.4 (35.8 MFLOPs) | searched"))
    assert "| tie |" in row
    # the convergence: 8 epochs per target, the argmax settled from epoch 5
    assert sum(line.startswith("| ratio 0.4 (35.8 MFLOPs) | ") for line in md.splitlines()) == 2 + 8
    assert "argmax unchanged from epoch 5 of 8" in md and "uniform widths left: yes" in md
