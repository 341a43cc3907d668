"""Supernet training with progressive shrinking (Cai et al. 2020, Sec. 3.3; Savchenko et al. Sec. IV-A).

Phases, in order (each a :class:`PhaseConfig`; the CPU and GPU recipes set their epochs):

1. ``full``: the largest network only (it becomes the distillation teacher);
2. ``kernel``: elastic kernel size (3, 5, 7) at full depth and width;
3. ``depth``: elastic depth, first {3, 4} then {2, 3, 4};
4. ``expand``: elastic expand ratio, first {4, 6} then {3, 4, 6} (hidden channels are sorted by
   importance before the first expand phase, OFA's ``re_organize_middle_weights``).

Each phase samples uniformly from its candidate lists, which still contain the larger values
("while still sampling larger networks occasionally"); ``subnets_per_step`` subnets are sampled
per step and their gradients accumulated before one optimiser step (OFA's ``dynamic_batch_size``:
1 / 2 / 4). The loss is the paper's face loss -- softmax cross-entropy with label smoothing on
ArcFace margin logits, through the training engine's margin heads and PartialFC -- plus
``kd_ratio`` x distillation from the full network (OFA's soft-target cross-entropy on the
head's cosine logits, or a cosine loss on embeddings). The input resolution is fixed (the paper
removed elastic resolution for faces).

Resumable: the whole state (supernet, head, teacher, optimiser, schedule, phase, epoch, batch,
RNG and the data order) is written atomically to ``output/checkpoint.pt``; ``resume=True``
continues exactly where it stopped. Subnets are drawn from a generator seeded by
``(seed, global step, index)``, so a resumed run samples the same subnets. Under ``torchrun``
the supernet is wrapped in DDP (``find_unused_parameters``: inactive blocks get no gradient) and
every rank samples the same subnets.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facenas.config import TypedConfig
from facenas.errors import ConfigError, DataFormatError, FacenasError
from facenas.nas.report import Reporter
from facenas.utils.io import append_jsonl, atomic_torch_save, write_json
from facenas.utils.progress import Progress

from .network import OFASupernet, StageChoice
from .space import OFASpace

log = logging.getLogger(__name__)

SUPERNET_FORMAT = "facenas.ofa.supernet/1"
TRAIN_STATE_FORMAT = "facenas.ofa.train/1"


@dataclasses.dataclass
class PhaseConfig(TypedConfig):
    """One progressive-shrinking phase.

    Attributes:
        name: ``full``, ``kernel``, ``depth``, ``expand`` (or any label).
        epochs: epochs of this phase (fractions allowed: a fraction of the batches).
        kernel_sizes, expand_ratios, depths: candidates sampled in this phase (empty: the largest
            value of the space only).
        subnets_per_step: subnets sampled per step, gradients accumulated (OFA: 1, 2, 2, 4, 4).
        lr: peak learning rate of the phase (each phase restarts its schedule, as OFA's stages do).
        warmup_epoch: linear warm-up epochs at the start of the phase.
        sort_channels: sort hidden channels by importance at the start of the phase.
    """

    name: str = "full"
    epochs: float = 1.0
    kernel_sizes: list[int] = dataclasses.field(default_factory=list)
    expand_ratios: list[float] = dataclasses.field(default_factory=list)
    depths: list[int] = dataclasses.field(default_factory=list)
    subnets_per_step: int = 1
    lr: float = 0.1
    warmup_epoch: float = 0.0
    sort_channels: bool = False

    def check(self, source: str) -> None:
        if self.epochs <= 0 or self.subnets_per_step < 1 or self.lr <= 0 or self.warmup_epoch < 0:
            raise ConfigError(f"{source}: phase '{self.name}' needs epochs > 0, subnets_per_step >= 1, lr > 0, "
                              f"warmup_epoch >= 0 (got {self.to_dict()})")


def progressive_shrinking_phases(epochs: Mapping[str, float] | None = None, lr: float = 0.1,
                                 kernel_sizes=(3, 5, 7), expand_ratios=(3, 4, 6), depths=(2, 3, 4)) -> list[dict]:
    """OFA's schedule of phases (as dicts for a config); ``epochs`` per phase name overrides the defaults.

    Phases: ``full``, ``kernel``, ``depth_1`` (two largest depths), ``depth_2``, ``expand_1`` (two
    largest ratios, channels sorted first), ``expand_2``. OFA lowers the LR in later phases
    (kernel 3e-2 vs 2.5e-3 for depth/expand on ImageNet); here later phases use ``lr / 4``.
    """
    e = {"full": 10, "kernel": 3, "depth_1": 2, "depth_2": 2, "expand_1": 2, "expand_2": 3, **dict(epochs or {})}
    ks, es, ds = sorted(kernel_sizes), sorted(expand_ratios), sorted(depths)
    return [
        {"name": "full", "epochs": e["full"], "subnets_per_step": 1, "lr": lr, "warmup_epoch": min(1.0, e["full"] / 4)},
        {"name": "kernel", "epochs": e["kernel"], "kernel_sizes": ks, "subnets_per_step": 1, "lr": lr / 4},
        {"name": "depth_1", "epochs": e["depth_1"], "kernel_sizes": ks, "depths": ds[-2:], "subnets_per_step": 2,
         "lr": lr / 4},
        {"name": "depth_2", "epochs": e["depth_2"], "kernel_sizes": ks, "depths": ds, "subnets_per_step": 2,
         "lr": lr / 4},
        {"name": "expand_1", "epochs": e["expand_1"], "kernel_sizes": ks, "depths": ds, "expand_ratios": es[-2:],
         "subnets_per_step": 4, "lr": lr / 4, "sort_channels": True},
        {"name": "expand_2", "epochs": e["expand_2"], "kernel_sizes": ks, "depths": ds, "expand_ratios": es,
         "subnets_per_step": 4, "lr": lr / 4},
    ]


@dataclasses.dataclass
class SupernetTrainConfig(TypedConfig):
    """Progressive-shrinking training of an OFA face supernet.

    Attributes (data and loss fields keep arcface_torch / TrainConfig names):
        space, space_config: the search space (``ofa`` / ``ofa_tiny``) and its config.
        rec: training data (``.rec`` folder, image folder or ``"synthetic"``).
        num_classes: identities (0: read from the data).
        image_size: resize training and verification images (None: the data's 112 / space input).
        batch_size, num_workers: data loading.
        margin_head, margin_list, margin_scale, label_smoothing: the face loss (paper: ArcFace +
            label smoothing).
        sample_rate: PartialFC sampling rate.
        momentum, weight_decay, clip_grad_norm, lr_power: SGD and schedule (per phase).
        phases: the progressive-shrinking phases (dicts of :class:`PhaseConfig`).
        kd_ratio: weight of the distillation loss after the ``full`` phase (OFA: 1.0; 0 = off).
        kd_type: ``logits`` (soft-target cross-entropy on the head's scaled cosines, OFA's) or
            ``embedding`` (1 - cosine to the teacher's embedding; needed with sharded PartialFC).
        kd_temperature: temperature of the soft targets (logits are ``margin_scale * cos``).
        val_targets: ``.bin`` sets evaluated at the end of each phase (largest and smallest subnet
            after BN recalibration).
        calibration_images: training images used for BN recalibration before evaluation.
        output: output folder; resume: continue from ``output/checkpoint.pt``.
        checkpoint_every: also checkpoint every this many steps (0: at epoch ends only).
        max_minutes: stop (with a checkpoint) after this much training time.
        seed, threads, device: reproducibility and resources.
    """

    space: str = "ofa"
    space_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    rec: str = "synthetic"
    num_classes: int = 0
    image_size: int | None = None
    batch_size: int = 64
    num_workers: int = 1
    margin_head: str = "combined"
    margin_list: tuple[float, float, float] = (1.0, 0.5, 0.0)
    margin_scale: float = 64.0
    label_smoothing: float = 0.1
    sample_rate: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_grad_norm: float = 5.0
    lr_power: float = 1.0
    phases: list[dict[str, Any]] = dataclasses.field(default_factory=progressive_shrinking_phases)
    kd_ratio: float = 1.0
    kd_type: str = "logits"
    kd_temperature: float = 4.0
    val_targets: list[str] = dataclasses.field(default_factory=list)
    val_batch_size: int = 128
    calibration_images: int = 512
    output: str = "work_dirs/ofa_supernet"
    resume: bool = False
    checkpoint_every: int = 0
    max_minutes: float | None = None
    seed: int = 2048
    threads: int | None = None
    device: str = "auto"

    def check(self, source: str) -> None:
        if self.batch_size < 2:
            raise ConfigError(f"{source}: batch_size={self.batch_size} must be >= 2 (BatchNorm)")
        if self.kd_type not in ("logits", "embedding"):
            raise ConfigError(f"{source}: kd_type={self.kd_type!r} is not 'logits' or 'embedding'")
        if self.kd_ratio < 0 or self.kd_temperature <= 0 or not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"{source}: need kd_ratio >= 0, kd_temperature > 0, 0 <= label_smoothing < 1")
        if not self.phases:
            raise ConfigError(f"{source}: phases is empty; use progressive_shrinking_phases()")
        for i, phase in enumerate(self.phases):
            PhaseConfig.from_dict(phase, source=f"{source}: phases[{i}]")

    def phase_configs(self) -> list[PhaseConfig]:
        return [PhaseConfig.from_dict(p, source=f"phases[{i}]") for i, p in enumerate(self.phases)]

    def build_space(self) -> OFASpace:
        from facenas.nas.space import create_space

        space = create_space(self.space, **self.space_config)
        if not isinstance(space, OFASpace):
            raise ConfigError(f"space '{self.space}' is not an OFA space")
        return space


# -- sampling ----------------------------------------------------------------------------------------
def phase_candidates(space: OFASpace, phase: PhaseConfig) -> tuple[tuple, tuple, tuple]:
    """Kernel sizes, expand ratios and depths a phase samples from (checked against the space)."""
    out = []
    for field, allowed in (("kernel_sizes", space.kernel_sizes), ("expand_ratios", space.expand_ratios),
                           ("depths", space.depths)):
        values = tuple(getattr(phase, field)) or (allowed[-1],)
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ConfigError(f"phase '{phase.name}': {field} {bad} are not candidates of the space {list(allowed)}")
        out.append(values)
    return out[0], out[1], out[2]


def sample_subnet(space: OFASpace, phase: PhaseConfig, rng: np.random.Generator) -> list[StageChoice]:
    """A uniformly random architecture of ``phase``'s candidates (OFA's ``sample_active_subnet``)."""
    ks, es, ds = phase_candidates(space, phase)
    D = space.layout.max_depth
    arch = []
    for _ in range(space.layout.num_stages):
        depth = int(ds[rng.integers(len(ds))])
        kernels = tuple(int(ks[i]) for i in rng.integers(len(ks), size=D))
        expands = tuple(es[i] for i in rng.integers(len(es), size=D))
        arch.append(StageChoice(depth, kernels[:depth], expands[:depth]))
    return arch


def subnet_rng(seed: int, step: int, index: int) -> np.random.Generator:
    """The generator of the ``index``-th subnet of global step ``step`` (reproducible on resume)."""
    return np.random.default_rng([int(seed), int(step), int(index)])


# -- supernet files ------------------------------------------------------------------------------------
def save_supernet(path: str | Path, space: OFASpace, supernet: OFASupernet, meta: Mapping[str, Any] | None = None) -> None:
    """Write ``facenas.ofa.supernet/1``: the space (name + config) and the supernet's state dict."""
    atomic_torch_save({"format": SUPERNET_FORMAT, "space": space.name, "space_config": space.config(),
                       "state_dict": {k: v.detach().cpu() for k, v in supernet.state_dict().items()},
                       "meta": dict(meta or {})}, path)


def load_supernet(path: str | Path, device: str | torch.device = "cpu") -> tuple[OFASpace, OFASupernet]:
    """Read a supernet file (``torch.load(weights_only=True)``); returns the space and the supernet (eval)."""
    from facenas.adapters.insightface.backbones import load_state_dict_checked
    from facenas.nas.space import create_space

    if not Path(path).is_file():
        raise FacenasError(f"supernet file {path} does not exist; train one with the ofa.train_supernet "
                           "stage (`facenas search ofa CONFIG`, or a pipeline step)")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != SUPERNET_FORMAT:
        raise DataFormatError(str(path), f"not an OFA supernet (format {SUPERNET_FORMAT!r})")
    space = create_space(data["space"], **data["space_config"])
    supernet = space.supernet()
    load_state_dict_checked(supernet, data["state_dict"], str(path))
    return space, supernet.to(device).eval()


# -- losses ----------------------------------------------------------------------------------------------
def distillation_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor, head: nn.Module, scale: float,
                      temperature: float) -> torch.Tensor:
    """OFA's soft-target cross-entropy on scaled cosine logits, or 1 - cosine of the embeddings."""
    if kind == "embedding":
        return (1.0 - F.cosine_similarity(student, teacher.detach(), dim=1)).mean()
    centres = F.normalize(head.weight)
    s_logits = scale * F.linear(F.normalize(student), centres) / temperature
    with torch.no_grad():
        t_prob = F.softmax(scale * F.linear(F.normalize(teacher), centres.detach()) / temperature, dim=1)
    return torch.sum(-t_prob * F.log_softmax(s_logits, dim=1), dim=1).mean()


# -- the trainer -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class SupernetTrainResult:
    """What :func:`train_supernet` returns: final metrics, the output folder and the trained supernet."""

    metrics: dict[str, Any]
    output: str
    global_step: int
    train_seconds: float
    stopped_early: bool
    space: OFASpace = dataclasses.field(repr=False)
    supernet: OFASupernet = dataclasses.field(repr=False)


class _State:
    def __init__(self) -> None:
        self.phase = 0
        self.epoch = 0  # within the phase
        self.step_in_epoch = 0
        self.step_in_phase = 0
        self.global_step = 0
        self.train_seconds = 0.0
        self.epoch_rng: dict[str, Any] | None = None
        self.phase_started = False  # channel sorting / teacher done for the current phase


def train_supernet(config: SupernetTrainConfig, reporter: Reporter | None = None, train_loader: Any | None = None,
                   evaluator: Callable[[nn.Module], Mapping[str, float]] | None = None,
                   on_step: Callable[[dict[str, Any]], None] | None = None) -> SupernetTrainResult:
    """Train a supernet by progressive shrinking; see the module docstring.

    Args:
        config: the validated config.
        reporter: receives one intermediate metric dict per epoch and the final one.
        train_loader: batches of ``(images, labels)`` instead of ``get_dataloader(config.rec...)``.
        evaluator: ``model -> metrics`` instead of verification on ``val_targets``.
        on_step: called after every optimiser step with ``{"step", "phase", "loss"}`` (tests use
            it to interrupt a run).
    """
    from facenas.engine import distributed as D
    from facenas.plugins.engine.trainer import resolve_device

    config.validate("supernet train config")
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    dist_info = D.init_distributed(device)
    from facenas.utils.lock import output_lock

    try:
        with output_lock(config.output, "OFA supernet training", enabled=dist_info.is_main):  # one writer per folder
            return _train(config, device, dist_info, reporter, train_loader, evaluator, on_step)
    except Exception as exc:
        if D.is_peer_failure(exc, dist_info):
            raise D.peer_lost(exc, dist_info, config.output) from None
        raise
    finally:
        D.shutdown(dist_info)


def _train(cfg: SupernetTrainConfig, device: torch.device, dist_info: Any, reporter: Reporter | None,
           train_loader: Any | None, evaluator: Callable | None, on_step: Callable | None) -> SupernetTrainResult:
    from facenas.adapters.insightface.backbones import load_state_dict_checked
    from facenas.adapters.insightface.dataset import get_dataloader
    from facenas.adapters.insightface.losses import build_margin_head
    from facenas.adapters.insightface.partial_fc import PartialFC
    from facenas.engine import distributed as D
    from facenas.engine.checkpoint import agreed_checkpoint, capture_rng, save_rank_state
    from facenas.engine.optim import PolynomialLRWarmup, build_optimizer, param_groups
    from facenas.plugins.engine.trainer import data_num_classes
    from facenas.utils.seed import seed_everything

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed + dist_info.rank)
    space = cfg.build_space()
    phases = cfg.phase_configs()
    for phase in phases:
        phase_candidates(space, phase)
    image_size = cfg.image_size
    loader = train_loader if train_loader is not None else get_dataloader(
        cfg.rec, dist_info.local_rank, cfg.batch_size, seed=cfg.seed, num_workers=cfg.num_workers,
        image_size=image_size)
    found = data_num_classes(loader, cfg.rec)
    num_classes = cfg.num_classes or found
    if not num_classes:
        raise ConfigError(f"num_classes is 0 and the data at {cfg.rec!r} does not say how many identities it has")
    steps_per_epoch = len(loader)

    supernet = space.supernet().to(device)
    head = PartialFC(build_margin_head(cfg.margin_head, cfg.margin_list, cfg.margin_scale), space.embedding_size,
                     num_classes, cfg.sample_rate, False, seed=cfg.seed, label_smoothing=cfg.label_smoothing).to(device)
    if cfg.kd_ratio > 0 and cfg.kd_type == "logits" and (head.world_size > 1 or cfg.sample_rate < 1):
        raise ConfigError("kd_type='logits' needs all class centres in one process (sample_rate=1, one process); "
                          "use kd_type='embedding' with sharded or sampled PartialFC")
    teacher: nn.Module | None = None
    st = _State()
    ckpt = out / ("checkpoint.pt" if dist_info.world_size == 1 else f"checkpoint_rank{dist_info.rank}.pt")

    def make_optimizer(phase: PhaseConfig):
        opt = build_optimizer("sgd", param_groups(supernet, head), phase.lr, cfg.weight_decay, cfg.momentum)
        total = max(1, int(round(phase.epochs * steps_per_epoch)))
        warm = min(int(phase.warmup_epoch * steps_per_epoch), total - 1)
        return opt, PolynomialLRWarmup(opt, warm, total, cfg.lr_power), total

    resume_rng = None
    opt_state = sched_state = None
    resumed_buffers: dict[str, torch.Tensor] = {}
    if cfg.resume:
        state = _load_train_state(agreed_checkpoint(ckpt, dist_info))
        load_state_dict_checked(supernet, state["supernet"], str(ckpt))
        resumed_buffers = {k: v for k, v in state["supernet"].items() if k in dict(supernet.named_buffers())}
        load_state_dict_checked(head, state["head"], f"{ckpt} (head)")
        for key in ("phase", "epoch", "step_in_epoch", "step_in_phase", "global_step", "train_seconds", "epoch_rng",
                    "phase_started"):
            setattr(st, key, state[key])
        if state.get("teacher") is not None:
            teacher = space.build(space.largest()).to(device)
            load_state_dict_checked(teacher, state["teacher"], f"{ckpt} (teacher)")
            teacher.eval().requires_grad_(False)
        opt_state, sched_state = state["optimizer"], state["scheduler"]
        resume_rng = state["rng"]
        log.info("resumed %s at phase %d (%s), epoch %d, batch %d, step %d", ckpt, st.phase,
                 phases[min(st.phase, len(phases) - 1)].name, st.epoch, st.step_in_epoch, st.global_step)
    if dist_info.is_main:
        write_json(out / "config.json", {**cfg.to_dict(), "num_classes": num_classes, "steps_per_epoch": steps_per_epoch,
                                         "space_description": space.config()})

    model: nn.Module = supernet
    if dist_info.distributed:
        model = nn.parallel.DistributedDataParallel(supernet, device_ids=[dist_info.local_rank] if device.type == "cuda"
                                                    else None, find_unused_parameters=True, broadcast_buffers=False)
        D.restore_buffers(supernet, resumed_buffers)
    evaluate = evaluator
    if evaluate is None and cfg.val_targets and dist_info.is_main:
        evaluate = _make_evaluator(cfg, space)

    def record(rec: dict[str, Any]) -> None:
        if dist_info.is_main:
            append_jsonl(out / "train_metrics.jsonl", {"time": round(time.time(), 3), **rec})

    t_start = time.monotonic()
    stopped = False
    last_loss = float("nan")
    metrics: dict[str, Any] = {}
    while st.phase < len(phases) and not stopped:
        phase = phases[st.phase]
        if not st.phase_started:
            if phase.sort_channels:
                supernet.sort_channels_by_importance()
                log.info("phase %s: hidden channels sorted by importance", phase.name)
            if cfg.kd_ratio > 0 and teacher is None and st.phase > 0:
                teacher = _make_teacher(supernet)
                log.info("phase %s: the full network is the distillation teacher", phase.name)
            st.phase_started = True
        optimizer, scheduler, total_steps = make_optimizer(phase)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
            scheduler.load_state_dict(sched_state)
            opt_state = sched_state = None
        n_epochs = math.ceil(phase.epochs)
        progress = Progress(total_steps, f"ofa {phase.name}", unit="step", interval=15.0, start=st.step_in_phase)
        phase_losses: list[float] = []

        def save_checkpoint() -> None:
            state = {
                "format": TRAIN_STATE_FORMAT, "supernet": supernet.state_dict(), "head": head.state_dict(),
                "teacher": teacher.state_dict() if teacher is not None else None,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "phase": st.phase, "epoch": st.epoch, "step_in_epoch": st.step_in_epoch,
                "step_in_phase": st.step_in_phase, "global_step": st.global_step, "train_seconds": st.train_seconds,
                "epoch_rng": st.epoch_rng, "phase_started": st.phase_started,
                "rng": {**capture_rng(), "loader": _loader_state(loader)}, "config": cfg.to_dict(),
                "world_size": dist_info.world_size,
            }
            save_rank_state(state, ckpt, keep_previous=dist_info.distributed)
            D.barrier(dist_info)

        while st.epoch < n_epochs and st.step_in_phase < total_steps and not stopped:
            sampler = getattr(loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):  # a new data order every epoch, the same on resume
                sampler.set_epoch(sum(math.ceil(p.epochs) for p in phases[:st.phase]) + st.epoch)
            iterator = _epoch_iterator(loader, st, resume_rng)
            resume_rng = None
            model.train()
            head.train()
            t_last = time.monotonic()
            for images, labels in iterator:
                images, labels = images.to(device), labels.to(device)
                optimizer.zero_grad(set_to_none=True)
                loss_value = 0.0
                n_sub = phase.subnets_per_step
                t_emb = None
                if teacher is not None and cfg.kd_ratio > 0:
                    with torch.no_grad():
                        t_emb = teacher(images)
                for i in range(n_sub):
                    arch = sample_subnet(space, phase, subnet_rng(cfg.seed, st.global_step, i))
                    supernet.set_active(arch)
                    sync = contextlib.nullcontext() if (i == n_sub - 1 or not dist_info.distributed) else model.no_sync()
                    with sync:
                        emb = model(images)
                        loss = head(emb, labels)
                        if t_emb is not None:
                            loss = loss + cfg.kd_ratio * distillation_loss(cfg.kd_type, emb, t_emb, head,
                                                                           cfg.margin_scale, cfg.kd_temperature)
                        if not torch.isfinite(loss):
                            raise FacenasError(f"loss became {float(loss)} at step {st.global_step + 1} (phase "
                                               f"{phase.name}); lower the phase's lr or resume from {ckpt}")
                        (loss / n_sub).backward()
                    loss_value += float(loss.detach()) / n_sub
                if cfg.clip_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(supernet.parameters(), cfg.clip_grad_norm)
                optimizer.step()
                scheduler.step()
                st.global_step += 1
                st.step_in_epoch += 1
                st.step_in_phase += 1
                now = time.monotonic()
                st.train_seconds += now - t_last
                t_last = now
                last_loss = loss_value
                phase_losses.append(loss_value)
                progress.update(1, loss=loss_value, lr=optimizer.param_groups[0]["lr"])
                if st.global_step % 20 == 0:
                    record({"type": "train", "phase": phase.name, "step": st.global_step, "loss": loss_value,
                            "lr": optimizer.param_groups[0]["lr"], "train_seconds": round(st.train_seconds, 2)})
                if on_step is not None:
                    on_step({"step": st.global_step, "phase": phase.name, "loss": loss_value})
                if cfg.checkpoint_every and st.global_step % cfg.checkpoint_every == 0:
                    save_checkpoint()
                    t_last = time.monotonic()
                if cfg.max_minutes is not None and st.train_seconds >= cfg.max_minutes * 60:
                    log.warning("max_minutes=%s reached at step %d; stopping", cfg.max_minutes, st.global_step)
                    stopped = True
                    break
                if st.step_in_phase >= total_steps:
                    break
            del iterator
            if stopped:
                break
            st.epoch += 1
            st.step_in_epoch = 0
            st.epoch_rng = None
            epoch_metrics = {"phase": phase.name, "phase_index": st.phase, "epoch": st.epoch, "step": st.global_step,
                             "loss": float(np.mean(phase_losses[-steps_per_epoch:])) if phase_losses else last_loss,
                             "train_seconds": round(st.train_seconds, 2)}
            save_checkpoint()
            record({"type": "epoch", **epoch_metrics})
            if reporter is not None and dist_info.is_main:
                reporter.intermediate({**epoch_metrics, "default": -epoch_metrics["loss"]})
        progress.close()
        if stopped:
            save_checkpoint()
            break
        # end of phase: evaluate the largest and smallest subnet, write the supernet
        phase_metrics: dict[str, Any] = {"phase": phase.name, "step": st.global_step}
        if evaluate is not None and dist_info.is_main:
            phase_metrics.update(_evaluate_extremes(space, supernet, evaluate, cfg, phase))
            record({"type": "val", **phase_metrics})
            log.info("after phase %s: %s", phase.name, {k: v for k, v in phase_metrics.items() if k != "phase"})
        if dist_info.is_main:
            save_supernet(out / f"supernet_{phase.name}.pt", space, supernet, {"phase": phase.name,
                                                                              "global_step": st.global_step})
        metrics.update({f"{k}": v for k, v in phase_metrics.items() if k not in ("phase", "step")})
        st.phase += 1
        st.epoch = 0
        st.step_in_phase = 0
        st.step_in_epoch = 0
        st.phase_started = False
        if st.phase < len(phases):
            # the next phase starts with a fresh optimiser: checkpoint at the boundary
            optimizer, scheduler, _ = make_optimizer(phases[st.phase])
            save_checkpoint()

    final = {"loss": last_loss, "global_step": st.global_step, "train_seconds": round(st.train_seconds, 2),
             "wall_seconds": round(time.monotonic() - t_start, 2), "phases_done": st.phase,
             "stopped_early": stopped, **metrics}
    if dist_info.is_main:
        save_supernet(out / "supernet.pt", space, supernet, {"global_step": st.global_step, "phases_done": st.phase,
                                                           "config": cfg.to_dict()})
        final["supernet"] = str(out / "supernet.pt")
        acc_keys = [k for k in final if k.startswith("largest_") and k.endswith("_acc")]
        final["default"] = float(final[acc_keys[0]]) if acc_keys else -float(last_loss)
        write_json(out / "final.json", final)
        record({"type": "final", **final})
        if reporter is not None:
            reporter.final(final)
    supernet.eval()
    return SupernetTrainResult(final, str(out), st.global_step, st.train_seconds, stopped, space, supernet)


def _load_train_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"resume=True but there is no checkpoint at {path}; train without resume first")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != TRAIN_STATE_FORMAT:
        raise DataFormatError(str(path), f"not an OFA supernet training checkpoint ({TRAIN_STATE_FORMAT})")
    return data


def _largest(space: OFASpace) -> list[StageChoice]:
    return space.arch(space.largest())


def _make_teacher(supernet: OFASupernet) -> nn.Module:
    """A frozen static copy of the full network (cheaper to run than the elastic supernet)."""
    saved = supernet.active_arch()
    supernet.set_largest()
    teacher = supernet.get_active_subnet()
    supernet.set_active(saved)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _make_evaluator(cfg: SupernetTrainConfig, space: OFASpace):
    from facenas.adapters.insightface.evaluate import VerificationEvaluator
    from facenas.plugins.engine.trainer import resolve_val_targets

    bins = resolve_val_targets(cfg.val_targets, cfg.rec)
    return VerificationEvaluator(bins, batch_size=cfg.val_batch_size, flip=True, image_size=cfg.image_size)


def _evaluate_extremes(space: OFASpace, supernet: OFASupernet, evaluate: Callable, cfg: SupernetTrainConfig,
                       phase: PhaseConfig) -> dict[str, float]:
    """Verification metrics of the largest and the smallest subnet of the phase, BN recalibrated."""
    from .calibrate import load_calibration_images, recalibrate_bn

    images = load_calibration_images(cfg.rec, cfg.calibration_images, cfg.image_size, seed=cfg.seed)
    ks, es, ds = phase_candidates(space, phase)
    smallest = [StageChoice(min(ds), (min(ks),) * min(ds), (min(es),) * min(ds))] * space.layout.num_stages
    out: dict[str, float] = {}
    saved = supernet.active_arch()
    try:
        for name, arch in (("largest", _largest(space)), ("smallest", smallest)):
            supernet.set_active(arch)
            subnet = recalibrate_bn(supernet.get_active_subnet(), images).eval()
            with torch.no_grad():
                for k, v in evaluate(subnet).items():
                    out[f"{name}_{k}"] = float(v)
    finally:
        supernet.set_active(saved)
    return out


def _loader_state(loader: Any) -> torch.Tensor | None:
    g = getattr(loader, "generator", None)
    return g.get_state() if isinstance(g, torch.Generator) else None


def _set_loader_state(loader: Any, state: torch.Tensor | None) -> None:
    g = getattr(loader, "generator", None)
    if isinstance(g, torch.Generator) and state is not None:
        g.set_state(state)


def _epoch_iterator(loader: Any, st: _State, resume_rng: dict[str, Any] | None):
    """A fresh iterator over this epoch's batches; on resume, the same order, skipping the batches done."""
    from facenas.engine.checkpoint import restore_rng

    if resume_rng is not None and st.epoch_rng is not None and st.step_in_epoch > 0:
        torch.set_rng_state(st.epoch_rng["torch"])
        _set_loader_state(loader, st.epoch_rng.get("loader"))
        iterator = iter(loader)
        for _ in range(st.step_in_epoch):
            next(iterator)
        restore_rng(resume_rng)
        _set_loader_state(loader, resume_rng.get("loader"))
        return iterator
    if resume_rng is not None:
        restore_rng(resume_rng)
        _set_loader_state(loader, resume_rng.get("loader"))
    st.epoch_rng = {"torch": torch.get_rng_state(), "loader": _loader_state(loader)}
    return iter(loader)
