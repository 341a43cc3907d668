"""The training loop: outputs, kill-and-resume equivalence, bad input, LR schedule, the stage."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from facenas.adapters.insightface.backbones import CheckpointMismatchError, get_model, load_backbone
from facenas.errors import ConfigError
from facenas.plugins.engine import PolynomialLRWarmup, TrainConfig, TrainingDivergedError, train
from facenas.plugins.engine.stages import config_from_params
from facenas.nas.stages import run_stage_locally

from .conftest import tiny_config, tiny_loader


class StepAccuracy:
    """A stand-in verification: accuracy rises then falls, so best != last."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        return {"tiny_acc": [0.6, 0.9, 0.7][min(self.calls, 3) - 1], "tiny_acc_std": 0.01}


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_train_writes_checkpoints_metrics_and_best(tmp_path):
    cfg = tiny_config(tmp_path, val_every_epoch=1)
    result = train(cfg, train_loader=tiny_loader(), evaluator=StepAccuracy())
    out = tmp_path / "run"
    for name in ("checkpoint.pt", "last.pt", "best.pt", "model.pt", "config.json", "final.json", "train_metrics.jsonl"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "train_metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in rows].count("train") == result.global_step == 18  # 48 images / 8 x 3 epochs
    assert [r["step"] for r in rows if r["type"] == "val"] == [6, 12, 18]
    assert result.best == {"step": 12, "epoch": 2, "metric": "tiny_acc", "value": 0.9}
    assert result.metrics["tiny_acc"] == 0.7 and result.metrics["default"] == 0.7
    assert all(math.isfinite(r["loss"]) for r in rows if r["type"] == "train")
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["meta"]["global_step"] == 12 and best["format"] == "facenas.model/1"
    last = load_backbone(out / "last.pt")
    assert all(torch.equal(a, b) for a, b in zip(last.state_dict().values(), result.model.state_dict().values()))
    plain = torch.load(out / "model.pt", weights_only=True)  # arcface_torch's model.pt: a bare state dict
    assert set(plain) == set(result.model.state_dict())


class _Interrupt(Exception):
    pass


def _kill_at(step: int):
    def on_step(info):
        if info["step"] == step:
            raise _Interrupt(f"killed at step {step}")
    return on_step


@pytest.mark.parametrize("num_workers,sample_rate", [(0, 1.0), (2, 0.5)])
def test_kill_and_resume_is_bit_for_bit(tmp_path, num_workers, sample_rate):
    """A run interrupted mid-epoch and resumed ends with exactly the weights of an uninterrupted run."""
    common = dict(checkpoint_every=2, sample_rate=sample_rate, num_workers=num_workers, warmup_epoch=1)
    reference = train(tiny_config(tmp_path / "a", **common), train_loader=tiny_loader(num_workers=num_workers))
    cfg = tiny_config(tmp_path / "b", **common)
    with pytest.raises(_Interrupt):
        train(cfg, train_loader=tiny_loader(num_workers=num_workers), on_step=_kill_at(9))  # checkpoint at step 8
    state = torch.load(tmp_path / "b" / "run" / "checkpoint.pt", weights_only=True)
    assert state["global_step"] == 8 and state["step_in_epoch"] == 2  # mid-epoch (6 steps per epoch)
    resumed = train(cfg.replace(resume=True), train_loader=tiny_loader(num_workers=num_workers))
    assert resumed.global_step == reference.global_step == 18
    a, b = _weights(reference.model), _weights(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    ha = torch.load(tmp_path / "a" / "run" / "checkpoint.pt", weights_only=True)["head"]["weight"]
    hb = torch.load(tmp_path / "b" / "run" / "checkpoint.pt", weights_only=True)["head"]["weight"]
    assert torch.equal(ha, hb)


class _NanAfter(nn.Module):
    """Wraps a backbone; its output becomes NaN from the ``n``-th training forward on."""

    def __init__(self, inner: nn.Module, n: int):
        super().__init__()
        self.inner = inner
        self.n = n
        self.calls = 0
        self.facenas_network = inner.facenas_network

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.n:
                return out * float("nan")
        return out


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, checkpoint_every=3)
    inner = get_model("mbf", num_features=16, width_mult=0.125, input_size=32)
    model = _NanAfter(inner, n=5)
    with pytest.raises(TrainingDivergedError) as info:
        train(cfg, model=model, train_loader=tiny_loader())
    msg = str(info.value)
    assert "at step 5" in msg and "lower lr" in msg and "li_arcface" in msg and "step 3" in msg
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in state["backbone"].values() if v.is_floating_point())
    rows = [json.loads(line) for line in (tmp_path / "run" / "train_metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["type"] == "diverged" and rows[-1]["step"] == 5


def test_num_classes_smaller_than_the_data_fails_before_training(tmp_path):
    cfg = tiny_config(tmp_path, num_classes=4)
    with pytest.raises(ConfigError, match="num_classes=4 is smaller than the 6 identities"):
        train(cfg, train_loader=tiny_loader())
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_labels_beyond_num_classes_are_caught_when_the_data_cannot_say(tmp_path):
    loader = tiny_loader()
    del loader.dataset.num_classes
    with pytest.raises(ConfigError, match=r"at step 1 has label \d, outside \[0, num_classes=4\)"):
        train(tiny_config(tmp_path, num_classes=4), train_loader=loader)


def test_resume_with_another_architecture_lists_mismatching_keys(tmp_path):
    cfg = tiny_config(tmp_path, num_epoch=1)
    train(cfg, train_loader=tiny_loader())
    other = cfg.replace(resume=True, network_kwargs={"width_mult": 0.25, "input_size": 32})
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        train(other, train_loader=tiny_loader())
    with pytest.raises(ConfigError, match="no training checkpoint"):
        train(cfg.replace(resume=True, output=str(tmp_path / "nowhere")), train_loader=tiny_loader())


def test_resume_refuses_another_data_order_but_takes_a_lower_lr(tmp_path):
    cfg = tiny_config(tmp_path, num_epoch=1)
    train(cfg, train_loader=tiny_loader())
    with pytest.raises(ConfigError, match=r"other settings \(batch_size: 8 -> 4, seed: 7 -> 8\).*must stay"):
        train(cfg.replace(resume=True, batch_size=4, seed=8), train_loader=tiny_loader(batch_size=4))
    longer = train(cfg.replace(resume=True, num_epoch=2, lr=0.01), train_loader=tiny_loader())  # as after a divergence
    assert longer.global_step == 12


def test_config_validation_names_fields():
    with pytest.raises(ConfigError, match="did you mean 'margin_list'"):
        TrainConfig.from_dict({"rec": "x", "margin_lst": (1.0, 0.5, 0.0)})
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig.from_dict({"rec": "x", "optimizer": "adam"})
    with pytest.raises(ConfigError, match="warmup_epoch"):
        TrainConfig.from_dict({"rec": "x", "num_epoch": 2, "warmup_epoch": 2})
    with pytest.raises(ConfigError, match="rec"):
        TrainConfig.from_dict({})
    cfg = TrainConfig()
    with pytest.raises(ConfigError, match="did you mean 'num_epoch'"):
        cfg.num_epochs = 3


def test_polynomial_lr_with_warmup_closed_form():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = PolynomialLRWarmup(opt, warmup_iters=4, total_iters=14, power=2.0)
    rates = []
    for _ in range(15):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert rates[4] == pytest.approx(0.1) and rates[9] == pytest.approx(0.1 * 0.5 ** 2)
    assert rates[13] == pytest.approx(0.1 * 0.1 ** 2) and rates[14] == 0.0
    # closed form: a scheduler restored at iteration 9 continues with exactly the same rates
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    resumed = PolynomialLRWarmup(opt2, 4, 14, 2.0)
    resumed.load_state_dict({**resumed.state_dict(), "last_epoch": 8})
    opt2.step()
    resumed.step()
    assert opt2.param_groups[0]["lr"] == rates[9]


def test_adamw_and_gradient_accumulation_train(tmp_path):
    cfg = tiny_config(tmp_path, optimizer="adamw", lr=1e-3, weight_decay=0.1, gradient_acc=2, num_epoch=1,
                      margin_head="li_arcface", margin_list=(1.0, 0.45, 0.0))
    result = train(cfg, train_loader=tiny_loader())
    assert result.global_step == 6 and math.isfinite(result.metrics["loss"])


def test_engine_train_stage_reports_epochs_and_final(tmp_path, monkeypatch):
    import facenas.plugins.engine.trainer as trainer

    monkeypatch.setattr(trainer, "_make_loader", lambda cfg, dist: tiny_loader())
    monkeypatch.setattr(trainer, "_make_evaluator", lambda bins, cfg: StepAccuracy() if bins else None)
    monkeypatch.setattr(trainer, "resolve_val_targets", lambda names, rec: {n: n for n in names})
    params = {"config": tiny_config(tmp_path).to_dict() | {"output": None}, "num_epoch": 2, "val_targets": ["tiny"],
              "val_every_epoch": 1}
    final = run_stage_locally("engine.train", params, str(tmp_path / "trial"))
    assert final["default"] == final["tiny_acc"] == 0.9 and final["mflops"] > 0 and final["params_m"] > 0
    rows = [json.loads(line) for line in (tmp_path / "trial" / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in rows] == ["intermediate", "intermediate", "final"]
    assert [r["epoch"] for r in rows[:2]] == [1, 2] and rows[0]["default"] == 0.6
    assert (tmp_path / "trial" / "train" / "best.pt").is_file()


def test_stage_accepts_an_architecture_description(tmp_path):
    from facenas.nas.space import create_space

    space = create_space("toy", embedding_size=16, input_size=32)
    cfg = config_from_params({"config": {"rec": "memory"}, "arch": space.describe(space.smallest())}, tmp_path)
    assert cfg.network.endswith("arch.json") and cfg.output == str(tmp_path / "train")
    model = get_model(cfg.network, num_features=16)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 16)


def test_fp16_on_cpu_trains_in_float32_with_a_warning(tmp_path, caplog):
    cfg = tiny_config(tmp_path, fp16=True, num_epoch=1, device="cpu")
    with caplog.at_level("WARNING"):
        result = train(cfg, train_loader=tiny_loader())
    assert "fp16=True needs CUDA" in caplog.text and math.isfinite(result.metrics["loss"])
    with pytest.raises(ConfigError, match="CUDA is not available"):
        if not torch.cuda.is_available():
            train(cfg.replace(device="cuda"), train_loader=tiny_loader())
        else:  # pragma: no cover - GPU machines
            raise ConfigError("CUDA is not available (skipped on GPU machines)")


def test_cli_set_parses_literals():
    from facenas.plugins.engine import cli

    parsed = cli._parse_set(["lr=1", "network_kwargs={'width_mult': 0.5}", "network=mbf", "val_targets=['lfw']"])
    assert parsed == {"lr": 1.0, "network_kwargs": {"width_mult": 0.5}, "network": "mbf", "val_targets": ["lfw"]}
    assert isinstance(parsed["lr"], float)
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        cli._parse_set(["lr"])


class ClassPureVerification:
    """Fold accuracy of a sorted (class-pure) set swings below chance; the pooled AUC tracks the network."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        i = min(self.calls, 3) - 1
        return {"tiny_acc": [0.23, 0.05, 0.40][i], "tiny_acc_std": 0.3, "tiny_auc": [0.56, 0.70, 0.62][i]}


def test_select_metric_auc_keeps_best_by_pooled_auc_and_says_so(tmp_path, caplog):
    """Issue 19: best.pt was kept by lfw_devtest fold accuracy, meaningless on its class-pure folds."""
    import logging

    from recipes.configs._celeba299_cpu import protocol_config

    assert protocol_config().select_metric == "auc"  # the CPU recipes verify on lfw_devtest
    cfg = tiny_config(tmp_path, val_every_epoch=1, select_metric="auc")
    with caplog.at_level(logging.INFO, logger="facenas.plugins.engine.trainer"):
        result = train(cfg, train_loader=tiny_loader(), evaluator=ClassPureVerification())
    assert result.best == {"step": 12, "epoch": 2, "metric": "tiny_auc", "value": 0.70}
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["meta"]["global_step"] == 12
    assert "new best tiny_auc 0.7000 at step 12 (select_metric=auc)" in caplog.text
    assert result.metrics["default"] == result.metrics["tiny_auc"]  # what a pipeline ranks: the same measure
    # by fold accuracy (arcface_torch's choice, the default) the first, worst network would be kept
    acc = train(tiny_config(tmp_path / "acc", val_every_epoch=1), train_loader=tiny_loader(),
                evaluator=ClassPureVerification())
    assert acc.best["metric"] == "tiny_acc" and acc.best["step"] == 18
    assert acc.metrics["default"] == acc.metrics["tiny_acc"]
    with pytest.raises(ConfigError, match="select_metric"):
        TrainConfig.from_dict({"rec": "x", "select_metric": "f1"})


def test_stage_trains_an_architecture_with_changed_space_options_and_the_checkpoint_keeps_them(tmp_path, monkeypatch):
    """engine.train with ``arch`` + ``network_kwargs: {space_config: ...}`` (ofa_cpu.yml's ablation): the network
    trained is the architecture with those options, and its checkpoints rebuild it so."""
    import facenas.plugins.engine.trainer as trainer
    from facenas.nas.space import create_space

    monkeypatch.setattr(trainer, "_make_loader", lambda cfg, dist: tiny_loader())
    space = create_space("ofa_tiny")
    params = {"config": tiny_config(tmp_path).to_dict() | {"output": None, "embedding_size": space.embedding_size},
              "arch": space.describe(space.largest()), "num_epoch": 1,
              "network_kwargs": {"space_config": {"stage_se": [False] * 5, "stage_activations": ["relu"] * 5}}}
    final = run_stage_locally("engine.train", params, str(tmp_path / "trial"))
    assert math.isfinite(final["loss"]) and final["mflops"] > 0
    model = load_backbone(tmp_path / "trial" / "train" / "last.pt")
    kinds = {type(m).__name__ for m in model.modules()}
    assert "SqueezeExcite" not in kinds and "ReLU" in kinds
    assert model.facenas_network["arch"]["space_config"]["stage_se"] == [False] * 5
