"""The one latency model: every consumer predicts the same milliseconds and fails on a missing entry
with the same one-line error (table file, key, the `facenas lut build` command)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from facenas.adapters.runtime.latency_model import LatencyModel
from facenas.adapters.runtime.lut import LatencyTable, MissingLatencyEntry
from facenas.nas.space import create_space


def synthetic_table(space, path, seed: int = 0, calibrated: bool = True) -> LatencyTable:
    """A table of ``space`` with every correction term (overhead, scale, offset, per-MB, per-block) set."""
    rng = np.random.default_rng(seed)
    entries = {b.key: {"p10_ms": float(rng.uniform(0.05, 0.5)), "weight_mb": float(rng.uniform(0.0, 0.2))}
               for b in space.all_latency_blocks()}
    table = LatencyTable(space.name, space.config(), "onnxruntime", 1, {"cpu": "test"}, {"statistic": "p10_ms"},
                         entries, overhead={"p10_ms": 0.02},
                         calibration={"offset_ms": 0.3, "scale": 0.8, "per_weight_mb_ms": 0.5, "per_block_ms": 0.01}
                         if calibrated else None)
    table.save(path)
    return LatencyTable.load(path)


def _holed(space, tmp_path) -> tuple[str, str]:
    """A table file of ``space`` lacking one block every network has (the first fixed block)."""
    table = synthetic_table(space, tmp_path / "full.json")
    gone = space.latency_blocks(space.largest())[0].key
    del table.entries[gone]
    table.save(tmp_path / "holed.json")
    return str(tmp_path / "holed.json"), gone


def _check_one_line(err: MissingLatencyEntry, path: str, key: str) -> None:
    text = str(err)
    assert "\n" not in text and text.startswith(f"{path}: no latency entry for block '{key}'")
    assert "facenas lut build --space " in text and f"--out {path}" in text and err.missing == [key]


@pytest.mark.parametrize("calibrated", [True, False])
def test_additive_form_is_the_prediction(tmp_path, calibrated):
    space = create_space("ofa_tiny")
    model = LatencyModel(synthetic_table(space, tmp_path / "t.json", calibrated=calibrated), space)
    fixed, per = model.additive()
    rng = np.random.default_rng(1)
    for _ in range(20):
        s = space.sample(rng)
        keys = model.keys(s)
        assert fixed + sum(per[k] for k in keys) == pytest.approx(model.predict(s))
        assert model.predict(s) == pytest.approx(model.table.predict(s, space))
    if calibrated:  # the correction is applied, not the plain sum
        assert model.predict(s) != pytest.approx(model.block_sum(s))


def test_ofa_search_cost_and_bound_are_the_models_milliseconds(tmp_path):
    from facenas.plugins.ofa.costs import AdditiveCost

    space = create_space("ofa_tiny")
    model = LatencyModel(synthetic_table(space, tmp_path / "t.json"), space)
    cost = AdditiveCost.latency(space, model)
    rng = np.random.default_rng(2)
    for _ in range(20):
        s = space.canonical(space.sample(rng))
        assert cost.of_sample(s) == pytest.approx(model.predict(s))  # not the raw block sum
    assert cost.of_sample(s) != pytest.approx(model.block_sum(s))
    assert AdditiveCost.latency(space, str(tmp_path / "t.json")).of_sample(s) == pytest.approx(model.predict(s))


def test_lut_predict_cli(tmp_path, capsys):
    from facenas.cli import main

    space = create_space("ofa_tiny")
    synthetic_table(space, tmp_path / "t.json")
    s = space.sample(np.random.default_rng(3))
    (tmp_path / "arch.json").write_text(json.dumps(space.describe(s)))
    assert main(["lut", "predict", "--table", str(tmp_path / "t.json"), "--arch", str(tmp_path / "arch.json"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["predicted_ms"] == pytest.approx(LatencyModel.load(tmp_path / "t.json").predict(s))
    assert out["blocks"] == len(space.latency_blocks(s)) and out["corrected"] is True
    assert main(["lut", "predict", "--table", str(tmp_path / "t.json"), "--sample", json.dumps(s)]) == 0


# -- the same error for every consumer ------------------------------------------------------------
def _ofa_search(path, space, tmp_path):
    from facenas.plugins.ofa.train import save_supernet
    from facenas.nas.stages import run_stage_locally

    save_supernet(tmp_path / "supernet.pt", space, space.supernet())
    rng = np.random.default_rng(0)
    cands = [{"arch": {"sample": space.sample(rng)}, "metrics": {"default": float(i)}} for i in range(4)]
    run_stage_locally("ofa.search", {"supernet": str(tmp_path / "supernet.pt"), "candidates": cands,
                                     "cost": {"lut": path}, "bound": 10.0}, str(tmp_path / "search"))


def _ofa_strategy(path, space, tmp_path):
    from facenas.plugins.ofa.search import OFAEvolutionStrategy

    OFAEvolutionStrategy(space, latency_table=path, max_latency_ms=10.0)


def _enas(path, space, tmp_path):
    from facenas.plugins.enas.latency import build_latency_model

    build_latency_model({"lut": path}, space)


def _lut_validate(path, space, tmp_path):
    from facenas.adapters.runtime.lut import validate_table

    validate_table(LatencyTable.load(path), num_subnets=4, warmup=1, runs=2, min_time_s=0.0, rounds=1)


def _lut_predict(path, space, tmp_path):
    LatencyModel.load(path).predict(space.largest())


def _nni_profiler(path, space, tmp_path):
    from facenas.adapters.runtime.profiler import LatencyTableProfiler

    LatencyTableProfiler(table=path)


CONSUMERS = {"ofa.search": ("ofa_tiny", _ofa_search), "ofa_evolution": ("ofa_tiny", _ofa_strategy),
             "enas": ("enas_test", _enas), "lut validate": ("ofa_tiny", _lut_validate),
             "lut predict": ("ofa_tiny", _lut_predict), "nni profiler": ("ofa_tiny", _nni_profiler)}


@pytest.mark.parametrize("consumer", [pytest.param(c, marks=pytest.mark.nni) if c == "nni profiler" else c
                                      for c in sorted(CONSUMERS)])
def test_missing_entry_is_the_same_one_line_error(tmp_path, consumer):
    space_name, use = CONSUMERS[consumer]
    space = create_space(space_name)
    path, gone = _holed(space, tmp_path)
    with pytest.raises(MissingLatencyEntry) as err:
        use(path, space, tmp_path)
    _check_one_line(err.value, path, gone)


def test_missing_entry_on_the_command_line_is_one_line_exit_2(tmp_path, capsys):
    from facenas.cli import main

    space = create_space("ofa_tiny")
    path, gone = _holed(space, tmp_path)
    assert main(["lut", "predict", "--table", path, "--sample", json.dumps(space.largest())]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and gone in err[0] and "facenas lut build" in err[0]
