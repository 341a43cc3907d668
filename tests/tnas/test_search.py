"""The TNAS search end to end at test scale: the cost loss steers the expected FLOPs to the target, the
derived architecture lands within the tolerance, per-epoch metrics are reported, its numbers match the
pre-port golden hashes, and a search killed with ``kill -9`` (or stopped by its time budget) resumes bit
for bit from the shared loop's checkpoint."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from facenas.engine.checkpoint import TRAIN_FORMAT
from facenas.engine.loop import metric_records

from facenas.errors import ConfigError
from facenas.nas.report import LocalReporter
from facenas.nas.space import build_from_description
from facenas.plugins.tnas.search import TnasSearchConfig, run_search
from facenas.plugins.tnas.space import TEST_SPACE
from tests.kill9 import run_killed

from .conftest import random_teacher
from tests.golden import require_recorded_platform


def _config(data, out, **kw) -> TnasSearchConfig:
    base = dict(space=dict(TEST_SPACE), teacher=random_teacher(), rec=str(data), batch_size=16, num_epoch=14,
                target_width_ratio=0.4, arch_lr=0.1, output=str(out), seed=3, device="cpu")
    base.update(kw)
    return TnasSearchConfig(**base)


@pytest.mark.slow  # a 14-epoch search (10-20 s here); the golden and kill -9 tests keep the loop in the fast suite
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
    assert m["arch"] == desc == result.description and m["arch_path"] == str(tmp_path / "search" / "arch.json")
    assert m["architectures"][0]["sample"] == result.sample == desc["sample"]
    net = build_from_description(desc)
    from facenas.nas.flops import count_flops

    assert count_flops(net, (1, 3, 32, 32)) / 1e6 == pytest.approx(m["mflops"])


# The 2-epoch search below (14 iterations, arch steps from the first one), hashed with the search's
# pre-port code (its own hand-written loop, commit a6c4b61) before it moved onto facenas.engine.loop: the
# port changed no number. Recorded with torch 2.13.0+cpu, AVX512 kernels, "AMD EPYC", one thread; float
# rounding differs between CPU kernels, so other machines compare only where these match.
GOLDEN = {"supernet": "350bbf6e835ccf2533161637cd0c4af5a0354322399e4d84a59e010176def7ed",
          "history": "07adb7c87da5da694bbab40f3363a5e462aeb90f32593a17ff37cb1a03226906",
          "sample": "63402bb82a58cc680834a7b2c80bcc3edc6628e868595bdff4cd50da2d219b86"}
SHORT = dict(num_epoch=2, checkpoint_every=3, frequent=1)  # 7 iterations per epoch


def _tensor_hash(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(v.dtype).encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def _json_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in ("seconds", "train_seconds")} for h in history]


@pytest.fixture(scope="module")
def straight(synthetic_data, tmp_path_factory):
    """The short search, uninterrupted: its result and final checkpoint."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("straight")
    try:
        result = run_search(_config(synthetic_data, out, **SHORT))
    finally:
        torch.set_num_threads(before)
    return result, torch.load(out / "checkpoint.pt", weights_only=True)


def test_search_numbers_match_the_golden_hashes(straight):
    result, state = straight
    assert state["format"] == TRAIN_FORMAT and state["global_step"] == 14
    got = {"supernet": _tensor_hash(state["supernet"]), "history": _json_hash(_untimed(result.history)),
           "sample": _json_hash(result.sample)}
    require_recorded_platform()
    assert got == GOLDEN


def test_kill9_mid_epoch_then_resume_is_bit_for_bit(straight, synthetic_data, tmp_path):
    """A real ``kill -9`` at iteration 11 (epoch 2, batch 4); the last checkpoint is iteration 9's, mid-epoch."""
    result_a, state_a = straight
    out = tmp_path / "b"
    run_killed(f"""
        import torch
        torch.set_num_threads(1)
        from facenas.plugins.tnas.search import run_search
        from tests.kill9 import kill9_at
        from tests.tnas.test_search import SHORT, _config
        run_search(_config({str(synthetic_data)!r}, {str(out)!r}, **SHORT), on_step=kill9_at(11))
    """)
    killed = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (killed["global_step"], killed["epoch"], killed["step_in_epoch"]) == (9, 1, 2)
    assert not (out / "final.json").exists()
    resumed = run_search(_config(synthetic_data, out, resume=True, **SHORT))
    state_b = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state_b["global_step"] == 14
    for k, v in state_a["supernet"].items():
        assert torch.equal(v, state_b["supernet"][k]), k
    assert resumed.sample == result_a.sample and resumed.description == result_a.description
    assert _untimed(resumed.history) == _untimed(result_a.history)
    steps = [r["step"] for r in metric_records(out / "train_metrics.jsonl") if r["type"] == "train"]
    assert steps == list(range(1, 15))  # every iteration once: the killed run's 10 and 11 were cut back
    # the result: arch = the description, arch_path = its file; a finished search resumed reports it unchanged
    final = json.loads((out / "final.json").read_text())
    assert final["arch"] == json.loads((out / "arch.json").read_text()) and final["arch_path"] == str(out / "arch.json")
    again = run_search(_config(synthetic_data, out, resume=True, **SHORT))
    assert again.metrics == final and again.sample == result_a.sample and again.history == resumed.history


def test_time_budget_stops_mid_epoch_and_resume_finishes_the_same(straight, synthetic_data, tmp_path):
    result_a, state_a = straight
    out = tmp_path / "c"
    stopped = run_search(_config(synthetic_data, out, max_minutes=1e-9, **SHORT))
    assert stopped.stopped_early and stopped.metrics["global_step"] == 1 and stopped.history == []
    assert (out / "arch.json").is_file()  # the current argmax, derived
    done = run_search(_config(synthetic_data, out, resume=True, **SHORT))
    assert not done.stopped_early and done.sample == result_a.sample
    assert _untimed(done.history) == _untimed(result_a.history)  # the partial epoch went on accumulating
    state_c = torch.load(out / "checkpoint.pt", weights_only=True)
    for k, v in state_a["supernet"].items():
        assert torch.equal(v, state_c["supernet"][k]), k


def test_fresh_search_into_a_used_folder_is_refused(synthetic_data, tmp_path):
    from facenas.errors import OutputFolderError

    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(OutputFolderError, match="--resume"):
        run_search(_config(synthetic_data, tmp_path, **SHORT))


def test_divergence_names_the_step_and_the_fix(synthetic_data, tmp_path):
    from facenas.engine.loop import TrainingDivergedError

    with pytest.raises(TrainingDivergedError, match=r"distillation loss became nan at step 2 .*Fix: lower lr"):
        run_search(_config(synthetic_data, tmp_path, num_epoch=2, lr=1e12, clip_grad_norm=0.0))


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
    torch.save({"format": TRAIN_FORMAT, "x": Payload()}, out / "checkpoint.pt")
    with pytest.raises(DataFormatError, match="checkpoint.pt"):
        run_search(_config(synthetic_data, out, num_epoch=2, resume=True))
    assert not (tmp_path / "pwned").exists()
