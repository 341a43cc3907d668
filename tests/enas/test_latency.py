"""ENAS's latency goes through the one latency model (in-line tables and ``facenas lut build`` tables)."""
from __future__ import annotations

import numpy as np
import pytest

from facenas.adapters.runtime.latency_model import LatencyModel
from facenas.adapters.runtime.lut import MissingLatencyEntry
from facenas.errors import FacenasError
from facenas.plugins.enas.latency import build_latency_model
from facenas.nas.space import create_space


@pytest.fixture(scope="module")
def lut_path(tmp_path_factory):
    from facenas.adapters.runtime.lut import BuildConfig, build_table

    out = tmp_path_factory.mktemp("lut") / "enas_test_torch.json"
    build_table(BuildConfig(space="enas_test", runtime="torch", threads=1, warmup=1, runs=3, min_time_s=0.0,
                            calibrate=0), out)
    return out


def test_lut_latency_is_the_tables_prediction(lut_path):
    from facenas.adapters.runtime.lut import LatencyTable

    space = create_space("enas_test")
    model = build_latency_model({"lut": str(lut_path)}, space)
    assert isinstance(model, LatencyModel)
    table = LatencyTable.load(lut_path)
    rng = np.random.default_rng(0)
    for _ in range(5):
        s = space.sample(rng)
        assert model(s) == pytest.approx(table.predict(s, space)) and model(s) > 0
    assert model.info()["runtime"] == "torch"


def test_lut_for_another_configuration_is_refused(lut_path):
    with pytest.raises(FacenasError, match="lut build"):
        build_latency_model({"lut": str(lut_path)}, create_space("enas_test", channels=4))


def test_inline_table_sums_blocks_and_names_a_missing_key():
    space = create_space("enas_test")
    table = {b.key: 1.0 for b in space.all_latency_blocks()}
    model = build_latency_model({"table": table}, space)
    s = space.sample(np.random.default_rng(1))
    assert model(s) == len(space.latency_blocks(s))
    gone = next(iter(table))
    table.pop(gone)
    with pytest.raises(MissingLatencyEntry, match="in-line latency table of space 'enas_test'") as err:
        build_latency_model({"table": table}, space)
    assert err.value.missing == [gone]
