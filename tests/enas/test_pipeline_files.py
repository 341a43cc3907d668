"""recipes/nni/enas_cpu.yml holds every step of ENAS's top-3 vs random arcs of matching latency (issue 16, item 4);
enas_test.yml has the same steps small and runs through ``facenas nni run-local``; benchmarks/bench_enas.py and
summary.py's ENAS section read the collected record."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from facenas.adapters.nni.check import check_experiment_file
from facenas.adapters.nni.pipeline import pipeline_config_of

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "nni"
SHAPE = [("lut", "runtime.lut", None), ("search", "enas.search", "auxiliary"),
         ("random_arcs", "enas.random_arcs", None), ("retrain", "enas.retrain", "candidate"),
         ("random_retrain", "enas.retrain", "reference"), ("top1_seeds", "enas.retrain", "candidate"),
         ("random1_seeds", "enas.retrain", "reference"), ("top23_seeds", "enas.retrain", "candidate"),
         ("random23_seeds", "enas.retrain", "reference"), ("side_by_side", "runtime.latency", "auxiliary")]


def _steps(name: str):
    return pipeline_config_of(yaml.safe_load((RECIPES / name).read_text())["tuner"]).step_configs(name)


def test_enas_cpu_holds_every_step_of_the_top3_vs_random_comparison(monkeypatch):
    from facenas.nas.stages import STAGES

    for key in ("FACENAS_VAR_RETRAIN_EPOCHS", "FACENAS_VAR_RETRAIN_MINUTES"):
        monkeypatch.delenv(key, raising=False)
    steps_list = _steps("enas_cpu.yml")
    assert [(s.name, s.stage, s.role) for s in steps_list] == SHAPE
    steps = {s.name: s for s in steps_list}
    roles = {s.name: s.role or getattr(STAGES.get(s.stage), "default_role", "candidate") for s in steps_list}
    assert roles["lut"] == roles["random_arcs"] == "auxiliary"  # only the retrained top arcs are ranked by NNI
    # the table is built by the experiment (nothing outside it), and every predicted latency is that table's
    lut = steps["lut"].params
    assert (lut["space"], lut["runtime"], lut["threads"]) == ("enas", "onnxruntime", 1) and lut["validate"] > 0
    table = {"lut": "${lut.result.table}"}
    assert steps["search"].params["config"]["latency"] == table
    # the reward's target is that table's 20th percentile of random arcs (the recorded study's tight target), not a
    # number fixed against another table
    assert 20 in lut["percentiles"]
    assert steps["search"].params["config"]["reward"]["target_ms"] == "${lut.result.p20_ms}"
    assert steps["random_arcs"].params == {"architectures": "${search.result.architectures}", "latency": table,
                                           "tolerance": 0.1, "seed": 0}
    assert steps["random_retrain"].foreach == "${random_arcs.result.architectures}"
    assert steps["retrain"].foreach == "${search.result.architectures}"
    top, rnd = steps["retrain"].params, steps["random_retrain"].params
    assert top == rnd and top["latency"] == table  # the same recipe, budget and table for both groups
    assert top["config"] == "recipes/configs/celeba299_enas_retrain_cpu.py"
    assert (top["num_epoch"], top["threads"], top["seed"]) == (20, 1, 2048)  # the protocol's 20 epochs, its seed
    assert top["max_minutes"] >= 180  # 20 one-thread epochs fit (the protocol's 60-minute cap is for 2 threads)
    # the top arc and its random arc again with two more seeds, the same recipe otherwise: three seeds each for the
    # headline and for the top arc's own reference
    for step, source in (("top1_seeds", "search"), ("random1_seeds", "random_arcs")):
        seeds = steps[step]
        assert seeds.foreach == [1, 2] and 2048 not in seeds.foreach
        assert {k: v for k, v in seeds.params.items() if k not in ("arch", "search", "seed")} == \
            {k: v for k, v in top.items() if k not in ("arch", "search", "seed")}
        assert (seeds.params["arch"], seeds.params["search"], seeds.params["seed"]) == (
            f"${{{source}.result.architectures.0.arch}}", f"${{{source}.result.architectures.0}}", "${item}")
    # the second and third arcs of each group too: {search entry, seed} pairs, so every arc has the same three seeds
    for step, source in (("top23_seeds", "search"), ("random23_seeds", "random_arcs")):
        more = steps[step]
        assert more.foreach == [{"search": f"${{{source}.result.architectures.{i}}}", "seed": seed}
                                for i in (1, 2) for seed in (1, 2)]
        assert {k: v for k, v in more.params.items() if k not in ("arch", "search", "seed")} == \
            {k: v for k, v in top.items() if k not in ("arch", "search", "seed")}
        assert (more.params["arch"], more.params["search"], more.params["seed"]) == (
            "${item.search.arch}", "${item.search}", "${item.seed}")
    # every retrained network is timed in both runtimes, side by side, 1 thread, best export (the stage's default)
    timing = steps["side_by_side"].params
    assert timing["runtimes"] == ["onnxruntime", "tflite"] and timing["threads"] == 1 and "passes" not in timing
    retrained = {k: v for k, v in timing["models"].items() if isinstance(v, str)}
    assert retrained == {f"{g}{i + 1}": f"${{{step}[{i}].result.output}}/last.pt"
                         for g, step in (("top", "retrain"), ("random", "random_retrain")) for i in range(3)}
    assert steps["search"].params["config"]["top_k"] == 3
    assert check_experiment_file(RECIPES / "enas_cpu.yml").problems == []
    header = (RECIPES / "enas_cpu.yml").read_text().split("experimentName:")[0]
    assert "CPU time" in header and "hours" in header


def test_the_retrain_recipe_is_the_protocol(tmp_path):
    """What the retrain steps train with: the CPU-scale protocol (benchmarks/PROTOCOL.md), 20 epochs."""
    import numpy as np

    from facenas.nas.space import create_space
    from facenas.plugins.engine.stages import config_from_params

    space = create_space("enas")
    params = {k: v for k, v in {s.name: s for s in _steps("enas_cpu.yml")}["retrain"].params.items()
              if k not in ("search", "latency")}
    params["arch"] = space.describe(space.sample(np.random.default_rng(0)))
    cfg = config_from_params(params, tmp_path)
    assert (cfg.num_epoch, cfg.image_size, cfg.embedding_size, cfg.batch_size, cfg.lr) == (20, 64, 128, 64, 0.1)
    assert cfg.test_targets == ["lfw"] and cfg.threads == 1


def test_enas_test_has_the_same_steps():
    assert [(s.name, s.stage, s.role) for s in _steps("enas_test.yml")][1:] == SHAPE
    assert check_experiment_file(RECIPES / "enas_test.yml").problems == []


def test_summary_says_missing_until_the_record_exists(tmp_path):
    from benchmarks.summary import section_enas

    text = section_enas(tmp_path)
    assert "_missing: `benchmarks/results/enas_cpu.json` has not been recorded" in text
    assert "collect_pipeline OUT --name enas_cpu" in text


@pytest.fixture(scope="module")
def enas_test_run(tmp_path_factory):
    from facenas.cli import main as facenas_main

    out = tmp_path_factory.mktemp("enas") / "run"
    assert facenas_main(["nni", "run-local", str(RECIPES / "enas_test.yml"), "--output", str(out)]) == 0
    return out


@pytest.mark.slow
def test_enas_test_runs_locally_with_random_arcs_of_matching_latency(enas_test_run):
    from facenas.adapters.runtime.latency_model import LatencyModel
    from facenas.nas.space import create_space

    summary = json.loads((enas_test_run / "summary.json").read_text())
    roles = {(r["step"], r["role"]) for r in summary["trials"]}
    assert roles == {("data", "auxiliary"), ("lut", "auxiliary"), ("search", "auxiliary"), ("random_arcs", "auxiliary"),
                     ("retrain", "candidate"), ("random_retrain", "reference"), ("top1_seeds", "candidate"),
                     ("random1_seeds", "reference"), ("top23_seeds", "candidate"), ("random23_seeds", "reference"),
                     ("side_by_side", "auxiliary")}
    assert all(r["status"] == "SUCCEEDED" for r in summary["trials"])
    result = lambda step, i=0: json.loads((enas_test_run / step / f"{i:03d}" / "result.json").read_text())  # noqa: E731
    table = result("lut")["result"]["table"]
    model = LatencyModel.load(table, create_space("enas_test"))
    searched = result("search")["result"]["architectures"]
    arcs = result("random_arcs")["result"]["architectures"]
    assert len(arcs) == len(searched) == 2
    for i, (arc, top) in enumerate(zip(arcs, searched)):
        assert abs(model(arc["sample"]) / model(top["sample"]) - 1) <= 0.1  # the built table's LatencyModel
        assert arc["sample"] != top["sample"]
        retrained = result("random_retrain", i)
        assert retrained["arch"]["sample"] == arc["sample"] and retrained["role"] == "reference"
        assert retrained["result"]["latency_ms"] == pytest.approx(model(arc["sample"]))
    timed = result("side_by_side")["result"]["latency_ms"]
    assert set(timed) == {"top1", "top2", "random1", "random2"}
    assert all(timed[n][rt] > 0 for n in timed for rt in ("onnxruntime", "tflite"))


@pytest.mark.slow
def test_enas_test_search_targets_the_built_tables_p20(enas_test_run):
    """The search ran with reward.target_ms = the p20_ms its lut step reported (its recorded config and parameters),
    a target inside the range of the table's predictions, so the latency term binds for some arcs and not others."""
    result = lambda step: json.loads((enas_test_run / step / "000" / "result.json").read_text())  # noqa: E731
    lut = result("lut")["result"]
    target = lut["p20_ms"]
    assert lut["predicted_ms"]["min"] < target < lut["predicted_ms"]["max"]
    search = result("search")
    assert search["params"]["config"]["reward"]["target_ms"] == target
    recorded = json.loads((Path(search["out_dir"]) / "search" / "config.json").read_text())
    assert recorded["reward"] == {"target_ms": target, "exponent": -3}
    assert recorded["latency"] == {"lut": lut["table"]}
    # every controller arc's reward is Eq. 5 with that target, and it penalised the arcs slower than it
    from facenas.plugins.enas.reward import RewardConfig, latency_reward

    reward = RewardConfig(target_ms=target, exponent=-3)
    arcs = json.loads((Path(search["out_dir"]) / "search" / "arcs_history.json").read_text())
    for arc in arcs:
        assert arc["reward"] == pytest.approx(latency_reward(arc["accuracy"], arc["latency_ms"], reward), abs=1e-6)
    slower = [a for a in arcs if a["accuracy"] > 0 and a["latency_ms"] > target]
    assert slower, "no rewarded arc above the target: the latency term never bound (seeded run: a changed config?)"
    assert all(a["reward"] < latency_reward(a["accuracy"], None, RewardConfig()) for a in slower)


@pytest.mark.slow
def test_bench_enas_and_the_summary_read_the_collected_record(enas_test_run, tmp_path):
    from benchmarks.bench_enas import main as bench_main
    from benchmarks.collect_pipeline import main as collect_main
    from benchmarks.summary import section_enas

    assert collect_main([str(enas_test_run), "--name", "enas_cpu", "--experiment", "recipes/nni/enas_test.yml",
                         "--results", str(tmp_path)]) == 0  # the run folder written as $RUN_DIR, as in the CPU record
    s = bench_main(["--results", str(tmp_path)])
    assert [n["role"] for n in s["top"]] == ["candidate"] * 2 and [n["role"] for n in s["random"]] == ["reference"] * 2
    for i, pair in enumerate(s["pairs"], 1):
        assert pair["top"] == i and abs(pair["random_predicted_ms"] / pair["top_predicted_ms"] - 1) <= 0.1
        assert all(v > 0 for rt in ("onnxruntime", "tflite") for v in pair[f"{rt}_ms"])
    assert s["random"][0]["search"]["matches"] == 1 and s["random"][0]["search"]["draws"] >= 1
    assert s["table"]["runtime"] == "onnxruntime" and s["pending_steps"] == []
    assert s["search"]["sampled"]["epochs"] == [1, 2]  # the search's per-epoch curve, kept by the collector
    text = section_enas(tmp_path)
    assert "_missing" not in text.split("### Earlier study")[0]
    assert "| top1 | rank 1 |" in text and "| random2 | top2 " in text

    # the headline reads the same record: top arcs vs their matched random arcs, two seeds each (n<3: no headline)
    import dataclasses

    from benchmarks.seed_rows import ROW_SOURCES, gather_rows, networks
    from benchmarks.summary import section_headline

    source = dataclasses.replace(next(x for x in ROW_SOURCES if x.record == "enas_cpu"), metric="val_acc")
    nets = {n.name: n for n in networks(gather_rows(tmp_path, (source,)))}
    assert set(nets) == {"top1", "top2", "random1", "random2"}
    for name, net in nets.items():  # the run seed, and seed 1 from top1_seeds / random1_seeds / *23_seeds
        assert net.seeds == [0, 1]
        assert all(net.latency_ms[rt] > 0 for rt in ("onnxruntime", "tflite"))
    assert [(t["rank"], t["seeds"]) for t in s["top_seeds"]] == [(1, [0, 1]), (2, [0, 1])]
    assert [(t["rank"], t["seeds"]) for t in s["random_seeds"]] == [(1, [0, 1]), (2, [0, 1])]
    assert [n["seed"] for n in s["random"]] == [0, 0]  # the table's networks: the runs timed side by side
    assert s["lfw_acc_top_vs_random"]["seeds"] == [0, 1]  # each arc's mean over both
    own = section_headline(tmp_path, (source,)).split("### Each method against its own reference")[1]
    assert "| enas: top1 | random1 |" in own and "| enas: top2 | random2 |" in own and "n<3: not a headline" in own


@pytest.mark.slow
def test_published_arcs_are_the_networks_side_by_side_timed(enas_test_run, tmp_path, caplog):
    """benchmarks.publish_models with the real rows file on the run collected as enas_cpu: each top arc and random
    arc row resolves to its retrain trial and to its name in side_by_side's ``models`` (one latency trial timing
    them all); the arcs the test-scale run has no third of, and the records not collected here, are left out."""
    import dataclasses
    import logging

    from benchmarks.collect_pipeline import main as collect_main
    from benchmarks.publish_models import ROWS_FILE, load_rows, publish
    from benchmarks.seed_rows import ROW_SOURCES

    results = tmp_path / "results"
    results.mkdir()
    assert collect_main([str(enas_test_run), "--name", "enas_cpu", "--experiment", "recipes/nni/enas_test.yml",
                         "--results", str(results)]) == 0
    sources = (dataclasses.replace(next(x for x in ROW_SOURCES if x.record == "enas_cpu"), metric="val_acc"),)
    rows = load_rows(ROWS_FILE)
    models = tmp_path / "models"
    with caplog.at_level(logging.INFO, logger="benchmarks.publish_models"):
        out = publish(rows, {"enas_cpu": enas_test_run}, results, models, sources=sources)
    assert out["published"] == ["enas_random1.onnx", "enas_random2.onnx", "enas_top1.onnx", "enas_top2.onnx"]
    assert "enas_top3.onnx: step retrain network 'top3' of enas_cpu" in caplog.text  # top-2 at test scale

    trials = {}
    for f in enas_test_run.glob("*/*/result.json"):
        r = json.loads(f.read_text())
        trials[(r["step"], r["index"])] = r
    side = trials[("side_by_side", 0)]
    for e in json.loads((models / "manifest.json").read_text())["models"]:
        src, name = e["source"], e["source"]["headline_name"]
        k = int(name[-1])
        if name.startswith("top"):
            assert (src["step"], src["index"], e["compare_with"]) == ("retrain", k - 1, f"enas_random{k}.onnx")
        else:  # the random arc drawn to match top k's latency
            assert src["step"] == "random_retrain" and e["role"] == "reference"
            assert trials[("random_retrain", src["index"])]["params"]["search"]["matches"] == k
        assert (src["latency_step"], src["latency_index"], src["latency_model"]) == ("side_by_side", 0, name)
        assert e["latency_ms"] == side["metrics"]["latency_ms"][name]
        output = trials[(src["step"], src["index"])]["metrics"]["output"]
        assert side["params"]["models"][name] == f"{output}/last.pt"
        assert src["checkpoint"] == "$RUN_DIR" + side["params"]["models"][name][len(str(enas_test_run.resolve())):]
        more = {"top1": [trials[("top1_seeds", 0)]], "random1": [trials[("random1_seeds", 0)]],
                "top2": [trials[("top23_seeds", 0)]], "random2": [trials[("random23_seeds", 0)]]}[name]
        seeds = [trials[(src["step"], src["index"])]] + more
        assert e["seeds"]["values"] == [t["metrics"]["val_acc"] for t in seeds]  # also the seed steps' runs
        assert e["seed"] == 0  # the file is the timed network (the retrain step's)
