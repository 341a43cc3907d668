"""The alternating search (Algorithm 1) on synthetic identities: runs, reports, ranks, resumes exactly."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from facenas.errors import ConfigError
from facenas.plugins.enas.data import identity_split, load_search_data
from facenas.adapters.runtime.latency_model import LatencyModel
from facenas.plugins.enas.search import SearchConfig, child_lr_at, run_search, warped_cosine
from facenas.nas.flops import count_flops
from facenas.nas.report import LocalReporter
from facenas.nas.space import build_from_description, create_space



def flops_table(space) -> dict[str, float]:
    """A stand-in latency table for tests: 0.02 ms per block + 0.05 ms per million MACs."""
    return {b.key: 0.02 + 0.05 * count_flops(b.build(), (1, *b.input_shape)) / 1e6 for b in space.all_latency_blocks()}


@pytest.fixture(scope="module")
def search_data(synthetic_data):
    return load_search_data(str(synthetic_data), 32, (0.8, 0.1, 0.1), seed=0)


def tiny_config(synthetic_data, **over):
    space = create_space("enas_test")
    base = {"threads": None, "space": "enas_test", "rec": str(synthetic_data), "epochs": 2, "batch_size": 16, "steps_per_epoch": 3,
            "controller_steps": 2, "arcs_per_step": 3, "val_batch_size": 16, "candidates": 4, "top_k": 3,
            "reward": {"target_ms": 0.3, "exponent": -0.5}, "latency": {"table": flops_table(space)}, "seed": 1}
    return SearchConfig.from_dict({**base, **over})


def test_warped_cosine_eq6():
    assert warped_cosine(0.0) == pytest.approx(1.0)
    assert warped_cosine(1.0) == pytest.approx(0.0)
    assert warped_cosine(0.5) == pytest.approx((2 ** 1.5 - 2) / 2)
    lrs = [child_lr_at(s, 100, 10, 0.1, 1e-4) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] > 1e-4


def test_identity_split():
    labels = np.repeat(np.arange(5), [20, 10, 3, 2, 1])
    split = identity_split(labels, (0.8, 0.1, 0.1), seed=0)
    all_idx = np.concatenate(list(split.values()))
    assert sorted(all_idx.tolist()) == list(range(len(labels)))
    assert set(labels[split["train"]]) == set(range(5))  # every identity keeps training images
    assert np.sum(labels[split["val"]] == 0) == 2 and np.sum(labels[split["val"]] == 1) == 1
    assert np.sum(labels[split["val"]] == 4) == 0
    assert identity_split(labels, (0.8, 0.1, 0.1), seed=0)["val"].tolist() == split["val"].tolist()


def test_search_runs_reports_and_writes_top_k(synthetic_data, search_data, tmp_path):
    cfg = tiny_config(synthetic_data)
    reporter = LocalReporter(tmp_path)
    result = run_search(cfg, tmp_path, reporter=reporter, data=search_data)
    assert len(reporter.intermediates) == 2
    for m in reporter.intermediates:
        for key in ("reward", "accuracy", "latency_ms", "entropy", "child_loss", "greedy_latency_ms", "baseline"):
            assert math.isfinite(m[key]), key
        assert 0 <= m["reward"] <= math.pi / 2 and m["default"] == m["reward"]
    history = json.loads((tmp_path / "arcs_history.json").read_text())
    assert len(history) == 2 * 2 * 3
    candidates = json.loads((tmp_path / "candidates.json").read_text())
    assert len(candidates) == 4
    assert [c["val_acc"] for c in candidates] == sorted((c["val_acc"] for c in candidates), reverse=True)
    assert len(result["top"]) == 3 and result["default"] == candidates[0]["val_acc"]
    net = build_from_description(result["top"][0]["arch"])
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    # the latency the search used is the table's sum over the arc's blocks
    space = create_space("enas_test")
    table = LatencyModel.from_entries(space, flops_table(space))
    assert candidates[0]["latency_ms"] == pytest.approx(table(candidates[0]["sample"]))


def test_resume_matches_an_uninterrupted_search(synthetic_data, search_data, tmp_path):
    full = tiny_config(synthetic_data, candidates=3)
    run_search(full, tmp_path / "a", data=search_data)
    interrupted = tiny_config(synthetic_data, candidates=3, max_minutes=0.0)  # stops after epoch 1
    assert run_search(interrupted, tmp_path / "b", data=search_data)["epochs"] == 1
    resumed = tiny_config(synthetic_data, candidates=3, resume=True)
    run_search(resumed, tmp_path / "b", data=search_data)
    ha = json.loads((tmp_path / "a" / "arcs_history.json").read_text())
    hb = json.loads((tmp_path / "b" / "arcs_history.json").read_text())
    assert ha == hb
    ca = torch.load(tmp_path / "a" / "search_checkpoint.pt", weights_only=True)
    cb = torch.load(tmp_path / "b" / "search_checkpoint.pt", weights_only=True)
    for part in ("supernet", "head"):
        for k, v in ca[part].items():
            assert torch.equal(v, cb[part][k]), k
    assert ca["controller"]["baseline"] == cb["controller"]["baseline"]
    with pytest.raises(ConfigError, match="different settings"):
        run_search(tiny_config(synthetic_data, candidates=3, resume=True, seed=5), tmp_path / "b", data=search_data)


def test_config_errors(synthetic_data):
    with pytest.raises(ConfigError, match="latency model"):
        SearchConfig.from_dict({"reward": {"target_ms": 5.0}})
    with pytest.raises(ConfigError, match="must be <= 0"):
        SearchConfig.from_dict({"reward": {"exponent": 0.5}})
    with pytest.raises(ConfigError, match="did you mean"):
        SearchConfig.from_dict({"controller": {"lstm_sise": 4}})
    with pytest.raises(ConfigError, match="neither"):
        SearchConfig.from_dict({"rec": "/no/such/folder"}).resolved_rec()


class _Payload:
    """Pickles to a call of ``os.system`` (what a crafted checkpoint would carry)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_resume_from_a_crafted_checkpoint_runs_no_code(synthetic_data, search_data, tmp_path):
    from facenas.errors import DataFormatError

    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"format": "facenas.enas_search/1", "x": _Payload(marker)}, out / "search_checkpoint.pt")
    with pytest.raises(DataFormatError, match="search_checkpoint.pt"):
        run_search(tiny_config(synthetic_data, candidates=3, resume=True), out, data=search_data)
    assert not marker.exists()


def test_the_refusal_of_a_crafted_checkpoint_is_one_line(tmp_path):
    from facenas.engine.checkpoint import read_model_file
    from facenas.errors import DataFormatError

    path = tmp_path / "x.pt"
    torch.save({"x": _Payload(tmp_path / "pwned")}, path)
    with pytest.raises(DataFormatError) as info:
        read_model_file(path)
    assert "\n" not in str(info.value) and "x.pt" in str(info.value)
    assert not (tmp_path / "pwned").exists()
