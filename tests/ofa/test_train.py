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


def test_resume_continues_bit_for_bit(tmp_path, synthetic_data):
    phases = [dict(TINY_PHASES[0]), dict(TINY_PHASES[1], epochs=0.5), dict(TINY_PHASES[2])]
    full = train_supernet(_config(tmp_path / "a", synthetic_data, phases=phases, checkpoint_every=3))

    class Stop(Exception):
        pass

    def interrupt(info):
        if info["step"] == 11:  # the last checkpoint (step 9) is mid-epoch in the kernel phase
            raise Stop

    with pytest.raises(Stop):
        train_supernet(_config(tmp_path / "b", synthetic_data, phases=phases, checkpoint_every=3), on_step=interrupt)
    resumed = train_supernet(_config(tmp_path / "b", synthetic_data, phases=phases, checkpoint_every=3, resume=True))
    assert resumed.global_step == full.global_step
    a, b = full.supernet.state_dict(), resumed.supernet.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


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


# -- golden numbers ---------------------------------------------------------------------------------
#: A run with two epochs in one phase (the second fractional), distillation, channel sorting and
#: several subnets per step. Its losses and final supernet + head weights were recorded with the
#: training loop as it was before it moved onto facenas.engine.loop (commit a6c4b61, torch
#: 2.13 CPU); the port must not change a single bit.
GOLDEN_PHASES = progressive_shrinking_phases(
    {"full": 1.2, "kernel": 0.2, "depth_1": 0.13, "depth_2": 0.07, "expand_1": 0.2, "expand_2": 0.07})
GOLDEN = {"torch": "2.13", "steps": 28,
          "losses": "e789431f738b1800f6bd08b890a0f79b49d5797167fcc855061f5e2844fb8880",
          "weights": "345a078dd01e204568021881820c702fec6c150f3b17e335b6d792b78e6ed9f6"}


def _sha256(state: dict) -> str:
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


def _golden_run(out, synthetic_data) -> tuple[int, str, str]:
    import hashlib

    losses: list[float] = []
    result = train_supernet(_config(out, synthetic_data, phases=GOLDEN_PHASES), on_step=lambda r: losses.append(r["loss"]))
    head = torch.load(out / "checkpoint.pt", weights_only=True)["head"]
    weights = {**{f"supernet.{k}": v for k, v in result.supernet.state_dict().items()},
               **{f"head.{k}": v for k, v in head.items()}}
    return len(losses), hashlib.sha256(repr(losses).encode()).hexdigest(), _sha256(weights)


def test_numbers_match_the_golden_run(tmp_path, synthetic_data):
    if not torch.__version__.startswith(GOLDEN["torch"]):
        pytest.skip(f"golden numbers recorded with torch {GOLDEN['torch']}, this is {torch.__version__}")
    steps, losses, weights = _golden_run(tmp_path / "run", synthetic_data)
    assert (steps, losses, weights) == (GOLDEN["steps"], GOLDEN["losses"], GOLDEN["weights"])
