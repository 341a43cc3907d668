"""recipes/nni/ofa_cpu.yml holds every step behind the README's OFA rows; ofa_test.yml runs the same stages small."""
from __future__ import annotations

from pathlib import Path

import yaml

from facenas.adapters.nni.check import check_experiment_file
from facenas.adapters.nni.pipeline import _result_fields, pipeline_config_of
from facenas.config import load_config_module
from facenas.plugins.engine.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "nni"


def _pipeline(name: str):
    return _pipeline_of(yaml.safe_load((RECIPES / name).read_text()), name)


def _pipeline_of(data, name: str = "pipeline"):
    return pipeline_config_of(data["tuner"]).step_configs(name)


RUNTIMES = ("onnxruntime", "tflite")
REFERENCES = {"mbf_x025": 0.25, "mbf_x05": 0.5}
#: the fine-tuned picks: the comparator's under MobileFaceNet x0.5's latency, at 1x and at 0.7x (x0.25's is below
#: the space's smallest subnet: searched, to record that, but nothing to fine-tune)
PICKS = {"07x_mbf_x05": 0.7, "mbf_x05": 1}  # in the file's order: the faster picks first


def test_ofa_cpu_holds_every_step_behind_the_ofa_rows():
    steps_list = _pipeline("ofa_cpu.yml")
    finetunes = {pick: [(f"finetune_{rt}_{pick}", "ofa.finetune") for rt in RUNTIMES] for pick in PICKS}
    assert [(s.name, s.stage) for s in steps_list] == [
        ("lut_onnxruntime", "runtime.lut"), ("lut_tflite", "runtime.lut"),
        ("supernet", "ofa.train_supernet"), ("evaluate", "ofa.evaluate"), ("reference_latency", "runtime.latency"),
        ("search_onnxruntime", "ofa.search"), ("final_onnxruntime", "ofa.evaluate"),
        ("search_tflite", "ofa.search"), ("final_tflite", "ofa.evaluate"),
        # the onnxruntime 0.7x pick, fine-tuned and retrained from scratch, timed beside the front as soon as it is
        # trained
        finetunes["07x_mbf_x05"][0], ("retrain_onnxruntime_07x_mbf_x05", "engine.train"),
        ("side_by_side_07x", "runtime.latency"), finetunes["07x_mbf_x05"][1],
        # the onnxruntime 0.7x pick's MobileNetV3 parts ablated at a short budget, beside MobileFaceNet x0.5: before
        # the TFLite pick's timing, so that its third fine-tune has a partner on two cores
        ("ablation_07x", "engine.train"), ("ablation_reference", "engine.train"),
        ("side_by_side_tflite_07x", "runtime.latency"),
        *finetunes["mbf_x05"], ("equal_budget", "engine.train"), ("side_by_side", "runtime.latency")]
    timing_of = {("onnxruntime", "07x_mbf_x05"): "side_by_side_07x", ("tflite", "07x_mbf_x05"): "side_by_side_tflite_07x",
                 ("onnxruntime", "mbf_x05"): "side_by_side", ("tflite", "mbf_x05"): "side_by_side"}
    steps = {s.name: s for s in steps_list}
    # the reference points: the reference front's networks (same recipe, same width), timed untrained; not trained here
    front = {s.name: s for s in _pipeline("reference_front_cpu.yml")}
    points = steps["reference_latency"].params["models"]
    assert set(points) == set(REFERENCES) and steps["reference_latency"].params["runtimes"] == list(RUNTIMES)
    for name, width in REFERENCES.items():
        assert points[name] == {"config": front[name].params["config"], "network_kwargs": {"width_mult": width}}
        recipe = load_config_module(str(REPO / front[name].params["config"]), TrainConfig)
        assert {**recipe.network_kwargs, **front[name].params.get("network_kwargs", {})} == {"width_mult": width}
    # nothing of the front is trained again at the protocol's budget: the engine.train steps are the equal-budget
    # x0.5, the retrains and the short ablation
    assert {s.name for s in steps_list if s.stage == "engine.train"} == {
        "equal_budget", "retrain_onnxruntime_07x_mbf_x05", "ablation_07x", "ablation_reference"}
    seeds = yaml.safe_load((RECIPES / "ofa_cpu.yml").read_text())["tuner"]["classArgs"]["variables"]["finetune_seeds"]
    front_seed = yaml.safe_load((RECIPES / "reference_front_cpu.yml").read_text())["tuner"]["classArgs"]["variables"]["seed"]
    assert len(seeds) == len(set(seeds)) >= 3 and front_seed in seeds
    for rt in RUNTIMES:
        assert steps[f"lut_{rt}"].params["runtime"] == rt and steps[f"lut_{rt}"].params["validate"] > 0
        search = steps[f"search_{rt}"]
        # each runtime's search uses that runtime's table, under each reference's measured latency on that runtime
        # (and, as extra points, percentiles of the table's predictions)
        assert search.params["cost"] == {"lut": f"${{lut_{rt}.result.table}}"}
        bounds = [item["bound"] for item in search.foreach]
        assert {f"${{lut_{rt}.result.p35_ms}}", f"${{lut_{rt}.result.p75_ms}}"} <= set(bounds)
        assert {item["ranker"] for item in search.foreach} == {"comparator", "mlp"}
        assert search.params["bound"] == "${item.bound}" and search.params["bound_scale"] == "${item.scale}"
        x025 = f"${{reference_latency.result.latency_mbf_x025_{rt}_ms}}"
        assert [item for item in search.foreach if item["bound"] == x025] == [
            {"ranker": "comparator", "bound": x025, "scale": 1}]  # searched under, recorded as infeasible
        assert search.foreach[-1]["bound"] == x025  # last: the indices the fine-tunes refer to do not move
        for pick, scale in PICKS.items():
            ref = "mbf_x05"
            bound = f"${{reference_latency.result.latency_{ref}_{rt}_ms}}"
            assert {item["ranker"] for item in search.foreach if item["bound"] == bound and item["scale"] == scale} == {
                "comparator", "mlp"}
            index = next(i for i, item in enumerate(search.foreach)
                         if item == {"ranker": "comparator", "bound": bound, "scale": scale})
            finetune = steps[f"finetune_{rt}_{pick}"]
            assert finetune.foreach == "${vars.finetune_seeds}" or finetune.foreach == seeds
            assert finetune.params["seed"] == "${item}"
            assert finetune.params["sample"] == f"${{search_{rt}[{index}].result.arch.sample}}"  # comparator, that bound
            assert finetune.params["config"] == front[ref].params["config"]  # the reference's protocol
            assert finetune.params["head"] == "${supernet.result.head}"
            assert finetune.params["latency"] == {"runtime": rt}
            for i, seed in enumerate(seeds):  # every fine-tuned network, timed with the others in both runtimes
                path = steps[timing_of[rt, pick]].params["models"][f"ofa_{rt}_{pick}_seed{seed}"]
                assert path == f"${{finetune_{rt}_{pick}[{i}].result.output}}/last.pt"
        assert "lfw.bin" in steps[f"final_{rt}"].params["val"][0]
        assert steps[f"final_{rt}"].params["latency"]["runtime"] == rt
    # the retrains: each 0.7x pick's architecture (its search's arch, as the fine-tune's sample) trained exactly as
    # the reference front's networks (same recipe, no supernet), one trial per seed, timed in side_by_side_07x
    for rt in ("onnxruntime",):  # (the TFLite pick is only fine-tuned: see the file's header)
        retrain = steps[f"retrain_{rt}_07x_mbf_x05"]
        index = steps[f"finetune_{rt}_07x_mbf_x05"].params["sample"].split("[")[1].split("]")[0]
        assert retrain.params["arch"] == f"${{search_{rt}[{index}].result.arch}}"
        assert retrain.params["config"] == front["mbf_x05"].params["config"] and retrain.params["seed"] == "${item}"
        assert not {"supernet", "head", "num_epoch", "lr"} & set(retrain.params)  # the recipe's protocol, from scratch
        assert retrain.foreach == "${vars.finetune_seeds}" or retrain.foreach == seeds
        for i, seed in enumerate(seeds):
            assert steps["side_by_side_07x"].params["models"][f"ofa_{rt}_07x_mbf_x05_retrain_seed{seed}"] == (
                f"${{retrain_{rt}_07x_mbf_x05[{i}].result.output}}/last.pt")
    for name, networks in (("side_by_side_07x", 3 + 3), ("side_by_side_tflite_07x", 3), ("side_by_side", 1 + 2 * len(seeds))):
        side = steps[name].params
        assert {k: side["models"][k] for k in REFERENCES} == points  # the references in the same rounds, untrained
        untrained = sum(isinstance(v, dict) for v in side["models"].values())  # the front's six (test_side_by_side_references)
        assert untrained == 6 and len(side["models"]) == untrained + networks
        assert side["runtimes"] == list(RUNTIMES)
    assert steps["side_by_side"].params["models"]["equal_budget"] == "${equal_budget.result.output}/last.pt"
    # equal budget: x0.5 for the epochs a fine-tuned pick saw, supernet (its phases: the defaults) + fine-tuning
    from facenas.plugins.ofa.train import SupernetTrainConfig

    assert "phases" not in steps["supernet"].params["config"]
    supernet_epochs = sum(p.epochs for p in SupernetTrainConfig(rec="x").phase_configs())
    finetune_epochs = load_config_module(str(REPO / steps["finetune_onnxruntime_mbf_x05"].params["config"]),
                                         TrainConfig).num_epoch
    equal = steps["equal_budget"]
    assert equal.role == "reference" and equal.params["num_epoch"] == supernet_epochs + finetune_epochs == 42
    assert equal.params["config"] == front["mbf_x05"].params["config"] and equal.params["seed"] == front_seed
    assert equal.params["network_kwargs"] == {"width_mult": 0.5}
    assert check_experiment_file(RECIPES / "ofa_cpu.yml").problems == []


def test_ofa_cpu_keeps_the_steps_its_started_run_finished_or_runs():
    """The run in progress was started with the earlier file: its finished and running steps keep their names and
    parameters (so their trials are kept on resume: tests/ofa/test_pipeline_resume.py)."""
    import json

    started = json.loads((Path(__file__).resolve().parent / "data" / "ofa_cpu_state_started.json").read_text())
    begun = [s["name"] for s in started["steps"] if s["status"] != "waiting"]
    assert begun == ["lut_onnxruntime", "lut_tflite", "supernet"]
    data = yaml.safe_load((RECIPES / "ofa_cpu.yml").read_text())
    classargs = data["tuner"]["classArgs"]
    classargs["variables"]["shared_data"] = "$SHARED_DATA"
    now = {s.name: s.to_dict() for s in _pipeline_of(data)}
    saved = {s["name"]: s for s in started["config"]["steps"]}
    for name in begun:
        assert _result_fields(now[name]) == _result_fields(saved[name]), name
    assert started["config"]["seed"] == classargs["seed"] and started["name"] == classargs["name"]


def test_ofa_test_runs_the_same_stages():
    cpu = {s.stage for s in _pipeline("ofa_cpu.yml")}
    test = {s.stage for s in _pipeline("ofa_test.yml")}
    assert cpu <= test, cpu - test
    assert check_experiment_file(RECIPES / "ofa_test.yml").problems == []


def test_ofa_cpu_ablation_varies_only_the_space_options_of_the_pick_at_one_budget():
    """ablation_07x: the onnxruntime 0.7x pick's architecture (the retrain's) as searched, without SE, with ReLU
    and with both; ablation_reference: MobileFaceNet x0.5; same recipe, epochs, seed and data; auxiliary (no
    headline row)."""
    steps = {s.name: s for s in _pipeline("ofa_cpu.yml")}
    ab, ref, retrain = steps["ablation_07x"], steps["ablation_reference"], steps["retrain_onnxruntime_07x_mbf_x05"]
    assert ab.role == ref.role == "auxiliary"
    assert ab.params["arch"] == retrain.params["arch"]
    overrides = [item["space_config"] for item in ab.foreach]
    relu = {"stage_activations": ["relu"] * 5, "stem_activation": "relu", "head_activation": "relu"}
    assert overrides == [{}, {"stage_se": [False] * 5}, relu, {**relu, "stage_se": [False] * 5}]
    assert ab.params["network_kwargs"] == {"space_config": "${item.space_config}"}
    assert ref.params["network_kwargs"] == {"width_mult": 0.5}
    same = ("config", "num_epoch", "rec", "seed", "threads")
    assert {k: ab.params[k] for k in same} == {k: ref.params[k] for k in same}
    assert ab.params["num_epoch"] < 20 and ab.params["seed"] == 2048
    from facenas.nas.space import create_space

    space_config = yaml.safe_load((RECIPES / "ofa_cpu.yml").read_text())["tuner"]["classArgs"]["variables"]["space_config"]
    for over in overrides:  # every variant is a valid space of the same samples
        create_space("ofa", **{**space_config, **over})
