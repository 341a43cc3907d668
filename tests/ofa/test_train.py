"""Progressive-shrinking supernet training at test scale: phases, distillation, resume, files."""
from __future__ import annotations

import json

import pytest
import torch

from facenas.plugins.ofa.train import (
    PhaseConfig,
    SupernetTrainConfig,
    load_supernet,
    progressive_shrinking_phases,
    sample_subnet,
    subnet_rng,
    train_supernet,
)
from facenas.errors import ConfigError
from facenas.nas.space import create_space
from tests.golden import require_recorded_platform

TINY_PHASES = progressive_shrinking_phases(
    {"full": 0.25, "kernel": 0.125, "depth_1": 0.125, "depth_2": 0.125, "expand_1": 0.125, "expand_2": 0.125})


def _config(tmp_path, rec, **kw) -> SupernetTrainConfig:
    base = dict(space="ofa_tiny", rec=str(rec), batch_size=16, num_workers=0, image_size=32, phases=TINY_PHASES,
                output=str(tmp_path), calibration_images=32, seed=5)
    base.update(kw)
    return SupernetTrainConfig(**base)


def test_progressive_shrinking_end_to_end(tmp_path, synthetic_data):
    """All six phases on synthetic identities, evaluated on their verification pairs."""
    cfg = _config(tmp_path / "run", synthetic_data, val_targets=[str(synthetic_data / "val.bin")])
    result = train_supernet(cfg)
    assert result.metrics["phases_done"] == 6 and not result.stopped_early
    for name in ("largest", "smallest"):
        assert 0.0 <= result.metrics[f"{name}_val_acc"] <= 1.0
    lines = [json.loads(x) for x in (tmp_path / "run" / "train_metrics.jsonl").read_text().splitlines()]
    assert [x["phase"] for x in lines if x["type"] == "val"] == [p["name"] for p in TINY_PHASES]
    space, supernet = load_supernet(tmp_path / "run" / "supernet.pt")
    assert space.config() == create_space("ofa_tiny").config()
    torch.testing.assert_close(supernet.state_dict()["head.feature_mix.weight"],
                               result.supernet.state_dict()["head.feature_mix.weight"])
    assert (tmp_path / "run" / "supernet_full.pt").is_file() and (tmp_path / "run" / "checkpoint.pt").is_file()


def test_time_budget_stops_mid_phase_and_resume_finishes_bit_for_bit(tmp_path, synthetic_data):
    phases = TINY_PHASES[:2]  # full 4 steps, kernel 2
    straight = train_supernet(_config(tmp_path / "a", synthetic_data, phases=phases))
    stopped = train_supernet(_config(tmp_path / "b", synthetic_data, phases=phases, max_minutes=0.0))
    assert stopped.stopped_early and stopped.global_step == 1 and stopped.metrics["phases_done"] == 0
    assert not (tmp_path / "b" / "supernet_full.pt").exists()  # the phase did not end
    resumed = train_supernet(_config(tmp_path / "b", synthetic_data, phases=phases, resume=True))
    assert not resumed.stopped_early and resumed.global_step == 6 and resumed.metrics["phases_done"] == 2
    assert _sha256(resumed.supernet.state_dict()) == _sha256(straight.supernet.state_dict())


def test_non_finite_loss_stops_with_one_line(tmp_path):
    from facenas.engine.loop import TrainingDivergedError

    images = torch.full((4, 3, 32, 32), float("nan"))
    loader = [(images, torch.tensor([0, 1, 2, 3]))] * 3
    cfg = SupernetTrainConfig(space="ofa_tiny", num_classes=4, batch_size=4, image_size=32, phases=TINY_PHASES[:1],
                              output=str(tmp_path), seed=5)
    with pytest.raises(TrainingDivergedError, match=r"phase full, subnet 0\) became nan at step 1 .*no checkpoint "
                                                    r"was written yet\. Fix: lower phase full's lr"):
        train_supernet(cfg, train_loader=loader)


def test_phase_sampling_stays_within_candidates():
    space = create_space("ofa_tiny")
    phase = PhaseConfig(name="depth_1", kernel_sizes=[3, 5, 7], depths=[3, 4])
    seen_depths = set()
    for step in range(40):
        arch = sample_subnet(space, phase, subnet_rng(0, step, 0))
        assert arch == sample_subnet(space, phase, subnet_rng(0, step, 0))
        for stage in arch:
            seen_depths.add(stage.depth)
            assert set(stage.expand_ratios) == {6}
    assert seen_depths == {3, 4}
    with pytest.raises(ConfigError, match="not candidates"):
        sample_subnet(space, PhaseConfig(depths=[5]), subnet_rng(0, 0, 0))
    with pytest.raises(ConfigError, match="kd_type"):
        SupernetTrainConfig(kd_type="feature").validate("x")


# -- golden numbers, kill -9 ------------------------------------------------------------------------
#: 15 steps per epoch: full 18 steps (two epochs, the second cut to 3), kernel 3, depth_1 2, depth_2 1,
#: expand_1 3 (channels sorted, 4 subnets a step), expand_2 1; distillation from the kernel phase on.
#: Its losses and final supernet + head weights were recorded with the training loop as it was before
#: it moved onto facenas.engine.loop (commit a6c4b61, torch 2.13 CPU); the port changed no bit.
GOLDEN_PHASES = progressive_shrinking_phases(
    {"full": 1.2, "kernel": 0.2, "depth_1": 0.13, "depth_2": 0.07, "expand_1": 0.2, "expand_2": 0.07})
GOLDEN = {"torch": "2.13", "steps": 28,
          "losses": "e789431f738b1800f6bd08b890a0f79b49d5797167fcc855061f5e2844fb8880",
          "weights": "345a078dd01e204568021881820c702fec6c150f3b17e335b6d792b78e6ed9f6"}


def _sha256(state) -> str:
    """One hash of the tensors (and plain values) of a nested state dict."""
    import hashlib

    h = hashlib.sha256()

    def add(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                add(f"{prefix}.{key}", value[key])
        elif isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{prefix}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
        else:
            h.update(f"{prefix}={value!r}".encode())

    add("", state)
    return h.hexdigest()


def _weights_hash(out) -> str:
    """The final supernet (``supernet.pt``) and head (the last checkpoint) weights."""
    supernet = torch.load(out / "supernet.pt", weights_only=True)["state_dict"]
    head = torch.load(out / "checkpoint.pt", weights_only=True)["head"]
    return _sha256({**{f"supernet.{k}": v for k, v in supernet.items()}, **{f"head.{k}": v for k, v in head.items()}})


def _golden_run(out, rec, resume: bool = False, kill_at: int | None = None):
    """The golden configuration (checkpoints every 10 steps: the kill -9 test resumes from them).

    Also the child process of the kill -9 test, hence one thread set here.
    """
    from tests.kill9 import kill9_at

    torch.set_num_threads(1)
    losses: list[float] = []

    def on_step(record):
        losses.append(record["loss"])
        if kill_at is not None:
            kill9_at(kill_at)(record)

    result = train_supernet(_config(out, rec, phases=GOLDEN_PHASES, checkpoint_every=10, resume=resume),
                            on_step=on_step)
    return result, losses


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory, synthetic_data):
    out = tmp_path_factory.mktemp("golden")
    result, losses = _golden_run(out, synthetic_data)
    return out, result, losses


def test_numbers_match_the_golden_run(golden_run):
    import hashlib

    require_recorded_platform()
    out, result, losses = golden_run
    assert result.global_step == len(losses) == GOLDEN["steps"]
    assert hashlib.sha256(repr(losses).encode()).hexdigest() == GOLDEN["losses"]
    assert _weights_hash(out) == GOLDEN["weights"]


def test_kill9_in_the_second_phase_then_resume_is_bit_for_bit(tmp_path, synthetic_data, golden_run):
    """SIGKILL just after the full phase ended (the boundary checkpoint), then, resumed, mid-epoch in the kernel phase."""
    from tests.kill9 import run_killed

    straight, straight_result, straight_losses = golden_run
    out = tmp_path / "killed"
    for resume, kill_at in ((False, 19), (True, 21)):
        run_killed(f"""
            from tests.ofa.test_train import _golden_run
            _golden_run({str(out)!r}, {str(synthetic_data)!r}, resume={resume}, kill_at={kill_at})
        """)
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        where = (state["global_step"], state["extra"]["phase"], state["epoch"], state["step_in_epoch"])
        if kill_at == 19:  # the full phase's end (step 18): the kernel phase, its teacher and optimiser already started
            assert where == (18, 1, 2, 0) and state["extra"]["phase_started"] and state["teacher"] is not None
        else:  # checkpoint_every=10: step 20 is the kernel phase's second, mid-epoch
            assert where == (20, 1, 2, 2) and state["extra"]["step_in_phase"] == 2
    resumed, losses = _golden_run(out, synthetic_data, resume=True)
    assert resumed.global_step == 28 and losses == straight_losses[20:]
    assert resumed.metrics["loss"] == straight_result.metrics["loss"]
    assert _weights_hash(out) == _weights_hash(straight)
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "checkpoint.pt", weights_only=True)
    for part in ("supernet", "teacher", "optimizer", "scheduler"):
        assert _sha256(a[part]) == _sha256(b[part]), part
    records = [json.loads(x) for x in (out / "train_metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "epoch"] == [15, 18, 21, 23, 24, 27, 28]  # each once
