"""OFA stages locally: data.synthetic -> ofa.evaluate (a saved supernet) -> ofa.search on the evaluated candidates."""
from __future__ import annotations

import math

import numpy as np
import pytest

from facenas.errors import ConfigError, FacenasError
from facenas.plugins.ofa.train import save_supernet
from facenas.nas.space import create_space
from facenas.nas.stages import STAGES, run_stage_locally


def test_data_evaluate_search_chain(tmp_path):
    assert {"data.synthetic", "ofa.train_supernet", "ofa.evaluate", "ofa.search"} <= set(STAGES.names())
    data = run_stage_locally("data.synthetic", {"num_identities": 8, "images_per_identity": 4, "val_identities": 6,
                                                "val_pairs": 40, "image_size": 32}, str(tmp_path / "data"))
    assert data["images"] == 32 and data["val"].endswith("val.bin")
    space = create_space("ofa_tiny")
    supernet = space.supernet()
    save_supernet(tmp_path / "supernet.pt", space, supernet)
    rng = np.random.default_rng(0)
    candidates = []
    for i in range(5):
        sample = space.sample(rng)
        res = run_stage_locally("ofa.evaluate", {"supernet": str(tmp_path / "supernet.pt"), "sample": sample,
                                                 "rec": data["rec"], "val": [data["val"]], "target": "val_auc",
                                                 "flip": False, "calibration_images": 16, "export": i == 0},
                                str(tmp_path / f"eval{i}"))
        assert res["default"] == res["val_auc"] and math.isfinite(res["mflops"]) and res["params_m"] > 0
        candidates.append({"arch": {"sample": sample}, "metrics": {"default": res["default"]}})
    assert (tmp_path / "eval0" / "model.pt").is_file()
    bound = float(np.median([space.flops(c["arch"]["sample"]) for c in candidates])) / 1e6
    for ranker in ("comparator", "mlp"):
        out = run_stage_locally("ofa.search", {"supernet": str(tmp_path / "supernet.pt"), "candidates": candidates,
                                               "ranker": ranker, "cost": "mflops", "bound": bound,
                                               "evolution": {"generations": 5, "population_size": 10, "top_k": 2}},
                                str(tmp_path / f"search_{ranker}"))
        assert len(out["architectures"]) == 2 and out["best_cost"] <= bound
        assert all(space.flops(a["sample"]) / 1e6 <= bound + 1e-9 for a in out["architectures"])
    # bound_scale: under 0.75x the given bound (e.g. 0.75x a reference's latency); both recorded
    base = {"supernet": str(tmp_path / "supernet.pt"), "candidates": candidates, "cost": "mflops",
            "evolution": {"generations": 3, "population_size": 10, "top_k": 1}}
    large = float(space.flops(space.largest())) / 1e6
    out = run_stage_locally("ofa.search", {**base, "bound": large, "bound_scale": 0.75}, str(tmp_path / "scaled"))
    assert out["bound"] == pytest.approx(0.75 * large) and out["bound_given"] == large and out["bound_scale"] == 0.75
    assert out["best_cost"] <= 0.75 * large + 1e-9
    with pytest.raises(ConfigError, match="bound_scale: 0 is not a positive number; give e.g. 0.7"):
        run_stage_locally("ofa.search", {**base, "bound": large, "bound_scale": 0}, str(tmp_path / "zero"))
    # a bound below the smallest subnet fails at once, naming the smallest reachable cost
    small = float(space.flops(space.smallest())) / 1e6
    with pytest.raises(FacenasError, match="smallest"):
        run_stage_locally("ofa.search", {**base, "bound": small, "bound_scale": 0.5}, str(tmp_path / "infeasible"))


def _data(tmp_path):
    return run_stage_locally("data.synthetic", {"num_identities": 8, "images_per_identity": 4, "val_identities": 6,
                                                "val_pairs": 40, "image_size": 32}, str(tmp_path / "data"))


def test_finetune_starts_from_the_supernets_weights_and_head(tmp_path):
    """ofa.finetune trains the extracted subnet (not a fresh one) with the supernet's margin head: at a
    learning rate that changes nothing, the trained network's weights are the supernet's slice."""
    import torch

    from facenas.adapters.insightface.backbones import load_backbone
    from facenas.plugins.engine.config import TrainConfig
    from facenas.plugins.engine.trainer import build_head

    data = _data(tmp_path)
    space = create_space("ofa_tiny")
    torch.manual_seed(0)
    supernet = space.supernet()
    save_supernet(tmp_path / "supernet.pt", space, supernet)
    sample = space.canonical(space.sample(np.random.default_rng(3)))
    config = {"rec": data["rec"], "val_targets": [data["val"]], "image_size": 32, "embedding_size": 16,
              "batch_size": 16, "num_epoch": 1, "warmup_epoch": 0, "lr": 1e-12, "weight_decay": 0.0, "num_workers": 0,
              "device": "cpu", "threads": 1, "verbose": 100000, "frequent": 10}
    head_state = build_head(TrainConfig.from_dict(config, source="test"), 8).state_dict()
    head_weight = head_state["weight"] = torch.randn(8, space.embedding_size)  # the "trained" class centres
    torch.save({"head": head_state}, tmp_path / "head.pt")
    out = run_stage_locally("ofa.finetune", {"supernet": str(tmp_path / "supernet.pt"), "head": str(tmp_path / "head.pt"),
                                             "sample": sample, "calibration_images": 16, "config": config},
                            str(tmp_path / "ft"))
    assert out["arch"]["sample"] == sample and out["latency_ms"] > 0 and math.isfinite(out["default"])
    trained = load_backbone(f"{out['output']}/last.pt")
    supernet.set_active(space.arch(sample))
    extracted = supernet.get_active_subnet()
    weights = {k: v for k, v in extracted.state_dict().items() if k.endswith("weight") and v.dim() > 1}
    got = trained.state_dict()
    assert weights and all(torch.allclose(got[k], v, atol=1e-6) for k, v in weights.items())
    ckpt = torch.load(f"{out['output']}/checkpoint.pt", map_location="cpu", weights_only=True)
    head_state = next(v for k, v in ckpt.items() if "head" in k and isinstance(v, dict))
    assert torch.allclose(head_state["weight"], head_weight, atol=1e-6)
    # a head of another dataset is refused with one line naming both counts
    with pytest.raises(ConfigError, match="num_classes=5, but the head"):
        run_stage_locally("ofa.finetune", {"supernet": str(tmp_path / "supernet.pt"), "head": str(tmp_path / "head.pt"),
                                           "sample": sample, "config": {**config, "num_classes": 5}},
                          str(tmp_path / "ft2"))


def test_runtime_lut_stage_builds_a_table_the_search_reads(tmp_path):
    from facenas.adapters.runtime.latency_model import LatencyModel

    out = run_stage_locally("runtime.lut", {"space": "toy", "space_config": {"input_size": 32}, "runtime": "torch",
                                            "warmup": 1, "runs": 3, "min_time_s": 0.0, "rounds": 1, "calibrate": 3,
                                            "validate": 4, "percentiles": [50]},
                            str(tmp_path / "lut"))
    model = LatencyModel.load(out["table"])
    assert out["entries"] == 12 and out["runtime"] == "torch" and 0 <= out["within_10pct"] <= 1
    assert out["predicted_ms"]["min"] <= out["p50_ms"] <= out["predicted_ms"]["max"]
    assert out["p50_ms"] > 0 and model.info()["corrected"]
    with pytest.raises(ConfigError, match="runtime.lut runtime"):
        run_stage_locally("runtime.lut", {"space": "toy", "runtime": "coreml"}, str(tmp_path / "bad"))


def test_runtime_latency_times_several_networks_in_the_same_rounds(tmp_path):
    space = create_space("toy", input_size=32)
    small = space.describe({"stem/width": 8, "block/kernel_size": 3, "block/depth": 1, "block/op": "dwconv"})
    large = space.describe({"stem/width": 16, "block/kernel_size": 5, "block/depth": 2, "block/op": "conv"})
    out = run_stage_locally("runtime.latency", {"models": {"small": small, "large": large}, "runtimes": ["onnxruntime"],
                                                "rounds": 2, "runs": 5, "min_time_s": 0.0}, str(tmp_path / "lat"))
    assert set(out["latency_ms"]) == {"small", "large"} and len(out["rounds"]["large"]["onnxruntime"]) == 2
    assert out["latency_small_onnxruntime_ms"] == out["latency_ms"]["small"]["onnxruntime"] > 0
    assert out["mflops_large"] > out["mflops_small"]
    with pytest.raises(ConfigError, match="'model'.*or 'models'"):
        run_stage_locally("runtime.latency", {"model": small, "models": {"a": large}}, str(tmp_path / "bad"))


def test_runtime_latency_times_a_network_built_from_a_training_recipe(tmp_path):
    """{config: RECIPE, network_kwargs: ...}: the untrained network engine.train builds (the reference of an OFA
    search is timed without being trained again): the same architecture as the trained one of the reference front."""
    import json
    from pathlib import Path

    recipe = "recipes/configs/celeba299_mbf_cpu.py"
    models = {"x025": {"config": recipe, "network_kwargs": {"width_mult": 0.25}}, "x05": {"config": recipe}}
    out = run_stage_locally("runtime.latency", {"models": models, "runtimes": ["onnxruntime"], "rounds": 1, "runs": 3,
                                                "min_time_s": 0.0}, str(tmp_path / "lat"))
    assert out["latency_x025_onnxruntime_ms"] > 0 and out["latency_x05_onnxruntime_ms"] > 0
    assert out["trained"] == {"x025": False, "x05": False}
    assert json.loads(out["models"]["x025"]) == models["x025"]
    # engine.train's own networks (benchmarks/results/reference_front_cpu.json: trained from the same recipe)
    record = json.loads((Path(__file__).resolve().parents[2] / "benchmarks/results/reference_front_cpu.json").read_text())
    trained = {t["step"]: t["metrics"]["mflops"] for t in record["result"]["trials"] if t["stage"] == "engine.train"}
    assert out["mflops_x025"] == pytest.approx(trained["mbf_x025"]) and out["mflops_x05"] == pytest.approx(trained["mbf_x05"])
    single = run_stage_locally("runtime.latency", {"model": models["x025"], "runtimes": ["onnxruntime"], "rounds": 1,
                                                   "runs": 3, "min_time_s": 0.0}, str(tmp_path / "one"))
    assert single["input_size"] == [64, 64] and single["trained"] is False
    assert single["mflops"] == pytest.approx(trained["mbf_x025"])
    from facenas.plugins.runtime_stages import runtime_latency

    with pytest.raises(ConfigError, match="width"):  # a bad override fails the dry run of facenas nni check
        runtime_latency.check_params({"models": {"a": {"config": recipe, "network_kwargs": {"widht_mult": 0.3}}}}, "")


def test_supernet_head_is_saved_for_finetuning(tmp_path):
    import torch

    from facenas.plugins.ofa.stages import save_head

    assert save_head(str(tmp_path)) is None  # no training state: nothing to save
    weight = torch.randn(5, 16)
    torch.save({"supernet": {}, "head": {"weight": weight}, "epoch": 3}, tmp_path / "checkpoint.pt")
    path = save_head(str(tmp_path))
    assert torch.equal(torch.load(path, weights_only=True)["head"]["weight"], weight)


# -- device (issue 17: the accuracy set on a GPU) -----------------------------------------------------------------
def _evaluate_params(tmp_path, **over):
    data = _data(tmp_path)
    space = create_space("ofa_tiny")
    if not (tmp_path / "supernet.pt").exists():
        save_supernet(tmp_path / "supernet.pt", space, space.supernet())
    sample = space.canonical(space.sample(np.random.default_rng(1)))
    return {"supernet": str(tmp_path / "supernet.pt"), "sample": sample, "rec": data["rec"], "val": [data["val"]],
            "target": "val_auc", "flip": False, "calibration_images": 16, **over}


def test_evaluate_device_cpu_explicit_equals_the_default(tmp_path):
    default = run_stage_locally("ofa.evaluate", _evaluate_params(tmp_path), str(tmp_path / "default"))
    cpu = run_stage_locally("ofa.evaluate", _evaluate_params(tmp_path, device="cpu"), str(tmp_path / "cpu"))
    assert cpu == default and math.isfinite(cpu["val_auc"])


def test_evaluate_device_errors_are_one_line(tmp_path, capsys):
    import torch

    from facenas.cli import main

    check = STAGES.get("ofa.evaluate").check_params  # the dry run (facenas nni check) takes a GPU file anywhere
    assert check({"device": "cuda:0"}, str(tmp_path)) == "cuda:0"
    with pytest.raises(ConfigError, match=r"device='gpu' is not a device; use 'cpu', 'cuda', 'cuda:N' or 'auto'"):
        check({"device": "gpu"}, str(tmp_path))
    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        return
    params = '{"supernet": "none.pt", "sample": {}, "rec": "none", "device": "cuda"}'  # refused before it reads them
    code = main(["-q", "search", "ofa.evaluate", "--params", params, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("facenas search: error: device='cuda' but CUDA is not available; "
                                 "use device='cpu' or 'auto'"), err


class _Stop(Exception):
    pass


def test_evaluate_recalibrates_and_verifies_the_subnet_on_the_device(tmp_path, monkeypatch):
    """With the resolved device replaced by the meta device (tensors without data), the subnet is moved
    there, the calibration batches follow it, and the verification gets the subnet on it."""
    import torch

    from facenas.adapters.insightface import evaluate as evaluate_mod
    from facenas.engine import distributed
    from facenas.plugins.ofa import calibrate

    params = _evaluate_params(tmp_path, device="cuda")
    monkeypatch.setattr(distributed, "resolve_device", lambda name: torch.device("meta"))
    seen: list[tuple[str, str]] = []
    original = calibrate.recalibrate_bn

    def stop_at_first_batch(_module, args):
        seen.append(("calibration batch", args[0].device.type))
        raise _Stop  # (BN's cumulative average reads a counter, which a meta tensor has not)

    def spy_recalibrate(model, images, *args, **kwargs):
        seen.append(("calibrated subnet", next(model.parameters()).device.type))
        if run == "calibration":
            model.register_forward_pre_hook(stop_at_first_batch)
            return original(model, images, *args, **kwargs)
        return model

    def spy_verify(self, model):
        seen.append(("verified subnet", next(model.parameters()).device.type))
        raise _Stop

    monkeypatch.setattr(calibrate, "recalibrate_bn", spy_recalibrate)
    monkeypatch.setattr(evaluate_mod.VerificationEvaluator, "__call__", spy_verify)
    for run in ("calibration", "verification"):
        with pytest.raises(_Stop):
            run_stage_locally("ofa.evaluate", params, str(tmp_path / run))
    assert seen == [("calibrated subnet", "meta"), ("calibration batch", "meta"),
                    ("calibrated subnet", "meta"), ("verified subnet", "meta")]


def test_check_refuses_a_bound_scale_that_is_no_positive_number(tmp_path):
    """`facenas nni check` runs the stage's dry-run check on each literal foreach item: a scale written as text is one
    line naming it, before any trial runs."""
    check = STAGES.get("ofa.search").check_params
    check({"supernet": "s.pt", "bound": "/placeholder", "bound_scale": 0.7}, str(tmp_path))
    with pytest.raises(ConfigError, match=r"bound_scale: '0.7x' is not a positive number; give e.g. 0.7"):
        check({"supernet": "s.pt", "bound": 1.0, "bound_scale": "0.7x"}, str(tmp_path))
    with pytest.raises(ConfigError, match="needs 'supernet' and 'bound'"):
        check({"supernet": "s.pt"}, str(tmp_path))
