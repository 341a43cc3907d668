"""Latency lookup tables on the toy space: build (resumable), predict, validate, missing keys, NNI profiler."""
from __future__ import annotations

import json

import numpy as np
import pytest

from facenas.adapters.runtime.lut import BuildConfig, LatencyTable, MissingLatencyEntry, build_table, validate_table

FAST = dict(warmup=2, runs=5, min_time_s=0.0)
BUILD = dict(FAST, rounds=2)


@pytest.fixture(scope="module")
def toy_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("lut") / "toy.json"
    return build_table(BuildConfig(space="toy", space_config={"input_size": 32}, calibrate=4, **BUILD), out)


def test_toy_space_blocks_cover_its_networks():
    from facenas.nas.space import create_space, grid

    space = create_space("toy")
    keys = {b.key for b in space.all_latency_blocks()}
    assert len(keys) == 12  # 2 widths x (stem + head + 2 kernels x 2 ops)
    for s in grid(space):
        blocks = space.latency_blocks(s)
        assert {b.key for b in blocks} <= keys and len(blocks) == 2 + s["block/depth"]


def test_build_table_complete_with_metadata(toy_table):
    assert toy_table.check_space() == []
    assert toy_table.runtime == "onnxruntime" and toy_table.threads == 1
    assert toy_table.device["cpu"] and "onnxruntime" in toy_table.device["versions"]
    assert toy_table.overhead["p10_ms"] > 0 and toy_table.settings["clock"] == "cpu"
    assert toy_table.probe["sample"] == toy_table.create_space().largest() and toy_table.unit_ms > 0
    assert toy_table.calibration["num_networks"] == 4 and toy_table.calibration["scale"] > 0
    entry = next(iter(toy_table.entries.values()))
    assert {"median_ms", "p10_ms", "p90_ms", "min_ms", "input_shape"} <= set(entry) and len(entry["rounds"]) == 2
    assert entry["p10_ms"] == pytest.approx(np.median([r["p10_ms"] for r in entry["rounds"]]))
    reloaded = LatencyTable.load(toy_table.path)
    assert reloaded.entries == toy_table.entries and reloaded.calibration == toy_table.calibration


def test_build_resumes_only_missing_blocks(toy_table, tmp_path, monkeypatch):
    from facenas.adapters.runtime import lut

    path = tmp_path / "partial.json"
    partial = LatencyTable.load(toy_table.path)
    dropped = sorted(partial.entries)[:2]
    for k in dropped:
        del partial.entries[k]
    partial.save(path)
    measured = []
    real = lut.Measurer.runner

    def counting(self, module, shape):
        measured.append(tuple(shape))
        return real(self, module, shape)

    monkeypatch.setattr(lut.Measurer, "runner", counting)
    table = build_table(BuildConfig(space="toy", space_config={"input_size": 32}, calibrate=4, **BUILD), path)
    assert len(measured) == 3 and table.check_space() == []  # the 2 dropped blocks + the speed probe
    assert measured[0] == (3, 32, 32)  # the probe (largest network) is exported first
    with pytest.raises(Exception, match="runtime='onnxruntime', not 'torch'"):
        build_table(BuildConfig(space="toy", space_config={"input_size": 32}, runtime="torch", **BUILD), path)


def test_predict_sums_blocks_with_correction(toy_table):
    space = toy_table.create_space()
    s = {"stem/width": 16, "block/kernel_size": 5, "block/depth": 2, "block/op": "conv"}
    keys = [b.key for b in space.latency_blocks(s)]
    stat = toy_table.statistic
    unit = toy_table.probe[stat]  # entries are stored relative to the probe network, in ms at build speed
    raw = sum(toy_table.entries[k]["rel"][stat] * unit for k in keys)
    assert toy_table.predict(s, corrected=False) == pytest.approx(raw)
    cal = toy_table.calibration
    weights = sum(toy_table.entries[k]["weight_mb"] for k in keys)
    assert weights == pytest.approx(sum(p.numel() for p in space.build(s).parameters()) * 4 / 1e6)
    expected = (cal["offset_ms"] + cal["scale"] * (raw - (len(keys) - 1) * toy_table.overhead["rel"][stat] * unit)
                + cal["per_weight_mb_ms"] * weights)
    assert toy_table.predict(s) == pytest.approx(expected)


def test_missing_key_lists_keys(toy_table, tmp_path):
    table = LatencyTable.load(toy_table.path)
    gone = [k for k in table.entries if k.startswith("dwconv|") and "k=5" in k]
    for k in gone:
        del table.entries[k]
    table.save(tmp_path / "holes.json")
    s = {"stem/width": 8, "block/kernel_size": 5, "block/depth": 1, "block/op": "dwconv"}
    with pytest.raises(MissingLatencyEntry) as err:
        table.predict(s)
    assert any(k in str(err.value) for k in gone) and "facenas lut build" in str(err.value)
    with pytest.raises(MissingLatencyEntry) as err:
        validate_table(table, num_subnets=16, **FAST)
    assert sorted(err.value.missing) == sorted(gone) and "\n" not in str(err.value)


def test_validate_reports_spearman_and_mape(toy_table):
    res = validate_table(toy_table, num_subnets=50, seed=1, rounds=1, **FAST)
    assert res["num_subnets"] == 16  # the toy space has 16 distinct networks
    for key in ("spearman", "mape", "raw_spearman", "raw_mape", "overhead_spearman", "overhead_mape", "absolute_spearman",
                "absolute_mape", "speed_ratio"):
        assert np.isfinite(res[key])
    assert -1 <= res["spearman"] <= 1 and res["mape"] >= 0
    assert all(r["measured_ms"] > 0 for r in res["subnets"])
    assert res["measurement_retest_spearman"] is None  # one round: nothing to compare


def test_validate_reports_the_measurements_own_repeatability(toy_table):
    res = validate_table(toy_table, num_subnets=6, seed=1, rounds=2, **FAST)
    assert -1 <= res["measurement_retest_spearman"] <= 1


def test_lut_cli(tmp_path, capsys):
    from facenas.cli import main

    out = tmp_path / "t.json"
    assert main(["lut", "build", "--space", "toy", "--space-config", '{"input_size": 32}', "--out", str(out), "--runs", "3",
                 "--warmup", "1", "--min-time", "0", "--calibrate", "3", "--json"]) == 0
    built = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert built["entries"] == 12 and built["calibration"]["num_networks"] == 3
    res_file = tmp_path / "v.json"
    assert main(["lut", "validate", "--table", str(out), "--num-subnets", "8", "--runs", "3", "--warmup", "1",
                 "--min-time", "0", "--rounds", "1", "--out", str(res_file), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["num_subnets"] == 8 and "subnets" not in res and len(json.loads(res_file.read_text())["subnets"]) == 8
    assert main(["lut", "build", "--space", "toy", "--space-config", "{bad", "--out", str(out)]) == 2
    assert main(["lut", "validate", "--table", str(tmp_path / "none.json")]) == 2


@pytest.mark.nni
def test_nni_profiler_and_range_filter(toy_table):
    from nni.nas.oneshot.pytorch.profiler import RangeProfilerFilter
    from nni.nas.profiler import Profiler

    from facenas.adapters.runtime.profiler import LatencyTableProfiler

    prof = LatencyTableProfiler(table=toy_table.path)
    assert isinstance(prof, Profiler)
    small = {"stem/width": 8, "block/kernel_size": 3, "block/depth": 1, "block/op": "dwconv", "nni/extra": 1}
    large = {"stem/width": 16, "block/kernel_size": 5, "block/depth": 2, "block/op": "conv"}
    p_small, p_large = prof.profile(small), prof.profile(large)
    assert p_small == pytest.approx(toy_table.predict({k: v for k, v in small.items() if "/" in k and k != "nni/extra"}))
    assert p_small < p_large
    keep = RangeProfilerFilter(prof, max=(p_small + p_large) / 2)
    assert keep(small) and not keep(large)


def test_calibration_keeps_a_term_only_when_it_predicts_held_out_networks_better():
    from facenas.adapters.runtime.lut import _fit

    def data(seed):
        rng = np.random.default_rng(seed)
        return (rng.uniform(0.5, 1.5, 20), rng.uniform(1.0, 5.0, 20), rng.integers(10, 20, 20).astype(float),
                rng.normal(0.0, 0.02, 20))

    plain = 0
    for seed in range(20):  # neither plays a part: a term would fit the noise (kept only by chance correlation)
        x, w, n, noise = data(seed)
        a, b, c, d = _fit(x, 0.1 + 1.7 * x + noise, w, n)
        plain += c == 0.0 and d == 0.0
        assert b == pytest.approx(1.7, rel=0.1)
    assert plain >= 15
    x, w, n, noise = data(0)
    a, b, c, d = _fit(x, 0.1 + 1.7 * x + 0.08 * w + noise, w, n)  # streaming the weights costs time
    assert c == pytest.approx(0.08, rel=0.3) and b == pytest.approx(1.7, rel=0.1)
    a, b, c, d = _fit(x, 0.1 + 1.7 * x + 0.05 * n + noise, w, n)  # every block boundary costs time
    assert d == pytest.approx(0.05, rel=0.3) and c == 0.0
    assert _fit(x[:2], 2 * x[:2])[1] == pytest.approx(2.0)  # too few networks: a scale only
