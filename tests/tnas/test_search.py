"""The TNAS search end to end at test scale: the cost loss steers the expected FLOPs to the target, the
derived architecture lands within the tolerance, per-epoch metrics are reported, and a killed search
resumes bit for bit from its atomic checkpoint."""
from __future__ import annotations

import json

import pytest
import torch

from facenas.errors import ConfigError
from facenas.nas.report import LocalReporter
from facenas.nas.space import build_from_description
from facenas.plugins.tnas.search import STATE_FORMAT, TnasSearchConfig, run_search
from facenas.plugins.tnas.space import TEST_SPACE

from .conftest import random_teacher


def _config(data, out, **kw) -> TnasSearchConfig:
    base = dict(space=dict(TEST_SPACE), teacher=random_teacher(), rec=str(data), batch_size=16, num_epoch=14,
                target_width_ratio=0.4, arch_lr=0.1, output=str(out), seed=3, device="cpu")
    base.update(kw)
    return TnasSearchConfig(**base)


def test_search_reaches_the_flops_target(synthetic_data, tmp_path):
    """The essential end-to-end check: the target (uniform width ratio 0.4) is half the FLOPs the
    initial, uniform distribution expects, so the cost loss has to do the work."""
    cfg = _config(synthetic_data, tmp_path / "search")
    reporter = LocalReporter(tmp_path / "trial")
    result = run_search(cfg, reporter=reporter)
    m = result.metrics
    target = m["target_mflops"]
    first, last = result.history[0], result.history[-1]
    assert first["expected_mflops"] > 1.4 * target  # starts far above the target
    # E_cost(A) pulled down by the cost loss (measured: to 0.69-0.83 of its start on an Intel Xeon over 3 seeds,
    # below 0.75 on an AMD EPYC; the trajectory depends on the CPU's float rounding through the Gumbel samples)
    assert last["expected_mflops"] < 0.9 * first["expected_mflops"]
    # Eq. 11's regime follows the argmax architecture, which the cost loss keeps around R
    last3 = [h["argmax_mflops"] for h in result.history[-3:]]
    assert abs(sum(last3) / len(last3) / target - 1) < 0.2 and all(abs(a / target - 1) < 0.35 for a in last3)
    assert m["within_tolerance"] and abs(m["mflops"] / target - 1) < 0.05
    assert m["repair_moves"] <= 3  # the argmax itself is at most a few single-choice steps from the band
    # per-epoch metrics reach the reporter (the NNI portal's intermediate results)
    assert len(reporter.intermediates) == cfg.num_epoch
    for key in ("arch_entropy", "expected_mflops", "argmax_mflops", "distill_loss", "val_distill_loss", "cost_loss"):
        assert all(key in r for r in reporter.intermediates)
    assert last["distill_loss"] < first["distill_loss"]
    assert reporter.final_metrics["mflops"] == m["mflops"]
    # the derived architecture builds standalone with the promised FLOPs
    desc = json.loads((tmp_path / "search" / "arch.json").read_text())
    net = build_from_description(desc)
    from facenas.nas.flops import count_flops

    assert count_flops(net, (1, 3, 32, 32)) / 1e6 == pytest.approx(m["mflops"])


class _Kill(Exception):
    pass


def test_killed_search_resumes_bit_for_bit(synthetic_data, tmp_path):
    kw = dict(num_epoch=2, checkpoint_every=3)
    straight = run_search(_config(synthetic_data, tmp_path / "a", **kw))
    state_a = torch.load(tmp_path / "a" / "search_state.pt", weights_only=True)

    def kill(record):
        if record["step"] == 11:  # epoch 2 (7 iterations per epoch); last checkpoint at 9, mid-epoch
            raise _Kill

    with pytest.raises(_Kill):
        run_search(_config(synthetic_data, tmp_path / "b", **kw), on_step=kill)
    assert torch.load(tmp_path / "b" / "search_state.pt", weights_only=True)["global_step"] == 9
    resumed = run_search(_config(synthetic_data, tmp_path / "b", resume=True, **kw))
    state_b = torch.load(tmp_path / "b" / "search_state.pt", weights_only=True)
    assert state_b["format"] == STATE_FORMAT and state_b["global_step"] == state_a["global_step"] == 14
    for k, v in state_a["supernet"].items():
        assert torch.equal(v, state_b["supernet"][k]), k
    assert resumed.sample == straight.sample
    assert [h["distill_loss"] for h in resumed.history] == [h["distill_loss"] for h in straight.history]


def test_config_errors_name_the_field(synthetic_data, tmp_path):
    with pytest.raises(ConfigError, match="target_mflops"):
        _config(synthetic_data, tmp_path, target_mflops=1.0).validate()
    with pytest.raises(ConfigError, match="cost_below"):
        _config(synthetic_data, tmp_path, cost_below="log").validate()
    with pytest.raises(ConfigError, match="outside the space"):
        run_search(_config(synthetic_data, tmp_path, target_width_ratio=None, target_mflops=100.0))
    with pytest.raises(ConfigError, match="unknown field"):
        TnasSearchConfig.from_dict({"teacher": "x", "rec": "y", "target_mflops": 1.0, "lamda": 2})


def test_resume_from_a_crafted_state_runs_no_code(synthetic_data, tmp_path):
    import os

    from facenas.errors import DataFormatError

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    out = tmp_path / "b"
    out.mkdir()
    torch.save({"format": STATE_FORMAT, "x": Payload()}, out / "search_state.pt")
    with pytest.raises(DataFormatError, match="search_state.pt"):
        run_search(_config(synthetic_data, out, num_epoch=2, resume=True))
    assert not (tmp_path / "pwned").exists()
