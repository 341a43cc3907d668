"""``enas.random_arcs``: uniformly random arcs within +-10 % of each searched arc's predicted latency (the
LatencyModel the reward uses), seeded, written as facenas.arch/1 files; no match is one line, exit 2."""
from __future__ import annotations

import json

import numpy as np
import pytest

from facenas.adapters.runtime.latency_model import LatencyModel
from facenas.errors import ConfigError
from facenas.nas.space import ARCH_FORMAT, create_space
from facenas.nas.stages import STAGES, run_stage_locally

from .test_search import flops_table


def _searched(space, n: int = 3, seed: int = 11) -> list[dict]:
    """Stand-ins for a search's ``architectures`` (entries with ``arch``), best first."""
    rng = np.random.default_rng(seed)
    return [{"arch": space.describe(space.sample(rng)), "rank": i + 1} for i in range(n)]


def test_each_random_arc_is_within_tolerance_of_its_searched_arc(tmp_path):
    space = create_space("enas_test")
    table = flops_table(space)
    model = LatencyModel.from_entries(space, table)
    searched = _searched(space)
    # the check means something: uniformly random arcs spread well beyond +-10 % of these latencies
    rng = np.random.default_rng(0)
    spread = [model(space.sample(rng)) / model(searched[0]["arch"]["sample"]) - 1 for _ in range(200)]
    assert max(abs(d) for d in spread) > 0.1 and any(abs(d) > 0.02 for d in spread)

    result = run_stage_locally("enas.random_arcs", {"architectures": searched, "latency": {"table": table},
                                                    "tolerance": 0.02, "seed": 5}, str(tmp_path))
    arcs = result["architectures"]
    assert len(arcs) == len(searched) and result["arch"] == arcs[0]["arch"]
    assert result["draws"] == sum(a["draws"] for a in arcs) and result["draws"] > len(arcs)  # some draws missed
    for i, (arc, top) in enumerate(zip(arcs, searched), 1):
        target = model(top["arch"]["sample"])
        assert arc["matches"] == i and arc["target_latency_ms"] == pytest.approx(target)
        assert arc["latency_ms"] == pytest.approx(model(arc["sample"]))  # the LatencyModel's prediction
        assert abs(model(arc["sample"]) / target - 1) <= 0.02
        assert arc["relative_difference"] == pytest.approx(arc["latency_ms"] / target - 1)
        assert arc["sample"] != top["arch"]["sample"] and arc["draws"] >= 1
        on_disk = json.loads(open(arc["arch_path"]).read())
        assert on_disk == arc["arch"] and on_disk["format"] == ARCH_FORMAT and on_disk["sample"] == arc["sample"]
        assert arc["arch_path"] == str(tmp_path / f"random{i}_arch.json")
    assert len({json.dumps(a["sample"], sort_keys=True) for a in arcs}) == len(arcs)
    # the stage is auxiliary: its `default` never competes with the retrained networks in the portal
    assert STAGES.get("enas.random_arcs").default_role == "auxiliary"


def test_draws_are_seeded(tmp_path):
    space = create_space("enas_test")
    params = {"architectures": _searched(space), "latency": {"table": flops_table(space)}}
    a = run_stage_locally("enas.random_arcs", {**params, "seed": 1}, str(tmp_path / "a"))
    b = run_stage_locally("enas.random_arcs", {**params, "seed": 1}, str(tmp_path / "b"))
    c = run_stage_locally("enas.random_arcs", {**params, "seed": 2}, str(tmp_path / "c"))
    samples = lambda r: [(x["sample"], x["draws"]) for x in r["architectures"]]  # noqa: E731
    assert samples(a) == samples(b)
    assert samples(a) != samples(c)


def _unmatchable(space) -> tuple[dict, dict]:
    """A table where sep_conv_5x5 costs 1000 ms, and a searched arc of 5x5 convolutions only: a uniformly
    random arc has all nine ops 5x5 with probability 4^-9."""
    table = {k: (1000.0 if "sep_conv_5x5" in k else 1.0) for k in flops_table(space)}
    sample = {c.label: ("sep_conv_5x5" if c.label.endswith("/op") else c.values[0]) for c in space.choices()}
    return table, {"arch": space.describe(sample)}


def test_no_match_within_the_draw_limit_is_one_clear_error(tmp_path):
    space = create_space("enas_test")
    table, top = _unmatchable(space)
    with pytest.raises(ConfigError, match=r"no random arc .* within \+-10% of architecture 1's predicted 9\d{3}\.\d+ ms "
                                          r"in max_draws=200 draws .* raise max_draws or tolerance"):
        run_stage_locally("enas.random_arcs", {"architectures": [top], "latency": {"table": table}, "max_draws": 200},
                          str(tmp_path))


def test_no_match_from_the_command_line_is_one_line_exit_2(tmp_path, capsys):
    from facenas.cli import main

    space = create_space("enas_test")
    table, top = _unmatchable(space)
    params = json.dumps({"architectures": [top], "latency": {"table": table}, "max_draws": 50})
    code = main(["-q", "search", "enas.random_arcs", "--params", params, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("facenas search: error: enas.random_arcs: no random arc of space 'enas_test'"), err


@pytest.mark.parametrize("bad, message", [
    ({"tolerance": 1.5}, "tolerance = 1.5 must be in (0, 1)"),
    ({"max_draws": 0}, "max_draws = 0 must be >= 1"),
    ({"latency": {}}, "'latency' is required"),
    ({"tolerence": 0.1}, "unknown field(s) for RandomArcsConfig: 'tolerence'"),
])
def test_bad_parameters_fail_in_the_dry_run(bad, message, tmp_path):
    """``facenas nni check`` runs the stage's dry run: the settings are checked before anything runs."""
    params = {"architectures": "/facenas-check/reference", "latency": {"lut": "/facenas-check/reference"}, **bad}
    with pytest.raises(ConfigError) as err:
        STAGES.get("enas.random_arcs").check_params(params, str(tmp_path))
    assert message in str(err.value)
