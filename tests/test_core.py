"""Core pieces: registry, typed configs, atomic files, the search-space interface, FLOPs, CLI."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from facenas.config import TypedConfig, load_config_module
from facenas.errors import ConfigError, FacenasError
from facenas.nas.flops import count_flops
from facenas.nas.space import (
    SPACES,
    InvalidSampleError,
    build_from_description,
    create_space,
    grid,
    load_description,
)
from facenas.registry import Registry, UnknownNameError
from facenas.utils.io import atomic_write, read_json, write_json


def test_registry_suggests_close_names():
    reg: Registry = Registry("widget")

    @reg.register("mobilefacenet")
    def make(x=1):
        return x

    assert reg.create("mobilefacenet", x=3) == 3
    assert "mobilefacenet" in reg and reg.names() == ["mobilefacenet"]
    with pytest.raises(UnknownNameError, match="did you mean 'mobilefacenet'"):
        reg.get("mobilefacenett")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("mobilefacenet")(lambda: 0)


@dataclasses.dataclass
class _Cfg(TypedConfig):
    network: str = "mbf"
    lr: float = 0.1
    margin_list: tuple[float, float, float] = (1.0, 0.5, 0.0)
    val_targets: list[str] = dataclasses.field(default_factory=list)


def test_typed_config_rejects_typos_and_bad_types(tmp_path):
    cfg = _Cfg()
    with pytest.raises(ConfigError, match="did you mean 'network'"):
        cfg.netwrok = "r50"
    with pytest.raises(ConfigError, match="unknown field"):
        _Cfg.from_dict({"lr": 0.1, "lrr": 1})
    with pytest.raises(ConfigError, match="field 'lr'"):
        _Cfg.from_dict({"lr": "fast"})
    with pytest.raises(ConfigError, match="margin_list"):
        _Cfg.from_dict({"margin_list": (1.0, 0.5)})
    assert _Cfg.from_dict({"lr": 1}).lr == 1  # ints are fine where floats are expected

    recipe = tmp_path / "recipe.py"
    recipe.write_text(f"from {__name__} import _Cfg\nconfig = _Cfg()\nconfig.lr = 0.02\n")
    assert load_config_module(recipe, _Cfg).lr == 0.02
    recipe.write_text("config = {'network': 'r50', 'lr': 0.5}\n")
    assert load_config_module(recipe, _Cfg).network == "r50"
    recipe.write_text("cfg = {}\n")
    with pytest.raises(ConfigError, match="defines no 'config'"):
        load_config_module(recipe, _Cfg)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"a": np.float32(1.5), "b": np.arange(2)})
    assert read_json(target) == {"a": 1.5, "b": [0, 1]}
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write("partial")
            raise RuntimeError("killed")
    assert read_json(target) == {"a": 1.5, "b": [0, 1]}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_space_interface_on_toy_space():
    space = create_space("toy")
    assert "toy" in SPACES.names()
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(20)]
    assert all(space.validate(s) == s for s in samples)
    assert len(grid(space)) == space.size() == 16
    # same seed, same samples
    rng2 = np.random.default_rng(0)
    assert samples[:5] == [space.sample(rng2) for _ in range(5)]
    with pytest.raises(InvalidSampleError, match="missing label"):
        space.validate({"stem/width": 8})
    bad = dict(samples[0], **{"block/kernal_size": 3})
    with pytest.raises(InvalidSampleError, match="did you mean"):
        space.validate(bad)
    with pytest.raises(InvalidSampleError, match="candidates"):
        space.validate(dict(samples[0], **{"block/kernel_size": 4}))
    # numpy scalars are unwrapped
    s = dict(samples[0], **{"stem/width": np.int64(16)})
    assert type(space.validate(s)["stem/width"]) is int
    enc = space.encode(samples[0])
    assert enc.shape == (8,) and enc.sum() == 4
    assert space.flops(space.largest()) > space.flops(space.smallest())


def test_description_round_trip(tmp_path):
    space = create_space("toy", embedding_size=16)
    sample = space.largest()
    desc = space.describe(sample)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(desc))
    torch.manual_seed(0)
    model = build_from_description(path)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 16)
    with pytest.raises(FacenasError, match="not a facenas architecture"):
        load_description({"space": "toy"})


def test_count_flops_matches_hand_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.Flatten(), nn.Linear(8 * 56 * 56, 10))
    expected = 8 * 56 * 56 * 3 * 9 + 8 * 56 * 56 * 9 + 8 * 56 * 56 * 10
    assert count_flops(model, (1, 3, 112, 112)) == expected
    assert count_flops(model, (4, 3, 112, 112)) == expected  # per sample


def test_import_facenas_is_light():
    code = "import sys, facenas, facenas.cli, facenas.nas.space; print(sorted(m for m in ('torch','nni','tensorflow','onnxruntime','lightgbm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_help_and_version():
    out = subprocess.run([sys.executable, "-m", "facenas", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("facenas ")
    res = subprocess.run([sys.executable, "-m", "facenas", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "COMMAND" in res.stdout


def test_random_strategy_exhausts_toy_space_and_resumes():
    from facenas.nas.strategy import STRATEGIES
    from facenas.plugins.toy_stages import toy_score

    space = create_space("toy")
    strat = STRATEGIES.create("random", space=space, seed=1)
    strat.run(lambda s: {"default": toy_score(s)}, budget=5)
    state = strat.state_dict()
    resumed = STRATEGIES.create("random", space=space, seed=99)
    resumed.load_state_dict(state)
    strat.run(lambda s: {"default": toy_score(s)}, budget=100)
    resumed.run(lambda s: {"default": toy_score(s)}, budget=100)
    assert len(strat.history) == 16 and strat.best()[0][1]["default"] == 1.0
    assert [s for s, _ in strat.history] == [s for s, _ in resumed.history]


def test_toy_stage_reports_locally(tmp_path):
    from facenas.nas.stages import run_stage_locally

    space = create_space("toy")
    final = run_stage_locally("toy.evaluate", {"sample": space.largest(), "epochs": 2}, str(tmp_path))
    assert final["default"] == 1.0 and final["mflops"] > 0
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [l["type"] for l in lines] == ["intermediate", "intermediate", "final"]
    assert json.loads((tmp_path / "final.json").read_text())["toy_score"] == 1.0
    with pytest.raises(FacenasError, match="injected"):
        run_stage_locally("toy.evaluate", {"sample": space.largest(), "fail_if": {"stem/width": 16}}, str(tmp_path))


def test_ranked_result_saves_each_architecture_and_points_at_the_best(tmp_path):
    """Every method's search result has one shape: ``arch`` a description, ``arch_path`` its file."""
    import json

    from facenas.nas.results import ranked_result

    descs = [{"format": "facenas.arch/1", "space": "toy", "space_config": {}, "sample": {"w": w}} for w in (3, 1)]
    out = ranked_result({"default": 1.0}, tmp_path, [(d, {"score": s}) for d, s in zip(descs, (0.9, 0.5))])
    assert out["arch"] == descs[0] and out["arch_path"] == str(tmp_path / "arch.json")
    assert json.loads((tmp_path / "arch.json").read_text()) == descs[0]
    assert [e["arch_path"] for e in out["architectures"]] == [str(tmp_path / "top1_arch.json"),
                                                                str(tmp_path / "top2_arch.json")]
    assert [e["score"] for e in out["architectures"]] == [0.9, 0.5]
    assert json.loads((tmp_path / "top2_arch.json").read_text())["sample"] == {"w": 1}


@pytest.mark.parametrize("name", SPACES.names())
def test_every_space_names_an_option_it_does_not_take(name):
    """create_space checks options against the space (its factory, or the class the factory builds), so a typo in
    an experiment file's space_config is one ConfigError naming it, not a Python signature error."""
    with pytest.raises(ConfigError) as err:
        create_space(name, no_such_option=1)
    assert "no_such_option" in str(err.value) and f"space '{name}'" in str(err.value)
