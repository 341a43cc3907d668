"""The experiment files that time the reference front's architectures beside their searched networks (the
headline's side-by-side latency ratios, benchmarks/seed_rows.side_by_side) name each one as the reference
front's step and build it from that step's recipe: the pairing is by name, so a name must mean that network."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "nni"
NETWORK_FIELDS = ("config", "network", "network_kwargs")


def _steps(name: str) -> dict[str, dict]:
    data = yaml.safe_load((RECIPES / name).read_text())
    return {s["name"]: s for s in data["tuner"]["classArgs"]["steps"]}


FRONT = {name: step for name, step in _steps("reference_front_cpu.yml").items() if step["stage"] == "engine.train"}


@pytest.mark.parametrize("name,step", [("ofa_cpu.yml", "side_by_side_07x"), ("ofa_cpu.yml", "side_by_side"),
                                       ("tnas_cpu.yml", "side_by_side"), ("enas_cpu.yml", "side_by_side")])
def test_every_reference_architecture_is_timed_beside_the_searched_networks_as_its_front_step(name, step):
    timing = _steps(name)[step]
    assert timing["stage"] == "runtime.latency" and timing["params"]["threads"] == 1
    models = timing["params"]["models"]
    untrained = {k: v for k, v in models.items() if isinstance(v, dict)}
    assert set(untrained) == set(FRONT), "each of the front's networks, under its step's name"
    for k, spec in untrained.items():
        front = {f: FRONT[k]["params"].get(f) for f in NETWORK_FIELDS}
        mine = {f: spec.get(f) for f in NETWORK_FIELDS}
        if front["network_kwargs"] is None and mine["network_kwargs"] == {"width_mult": 0.5}:
            mine["network_kwargs"] = None  # the recipe's own width (celeba299_mbf_cpu.py: x0.5), spelled out
        assert mine == front, k
    assert sorted(timing["params"]["runtimes"]) == ["onnxruntime", "tflite"]


def test_the_spelled_out_width_is_the_recipe_default():
    from facenas.config import load_config_module
    from facenas.plugins.engine import TrainConfig

    cfg = load_config_module(str(RECIPES.parents[1] / FRONT["mbf_x05"]["params"]["config"]), TrainConfig)
    assert cfg.network == "mbf" and dict(cfg.network_kwargs or {}).get("width_mult") == 0.5
