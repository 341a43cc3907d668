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

Training runs on the shared loop (:mod:`facenas.engine.loop`, the phases laid end to end as its
epochs), which writes ``output/checkpoint.pt`` (supernet, head, teacher, optimiser, schedule, the
phase, RNG and data order) and ``final.json``; ``resume=True`` continues exactly where it stopped,
also after ``kill -9``. Subnets are drawn from a generator seeded by ``(seed, global step,
index)``, so a resumed run samples the same subnets. Under ``torchrun`` the supernet is wrapped in
DDP (``find_unused_parameters``: inactive blocks get no gradient) and every rank samples the same
subnets. The trained supernet is ``output/supernet.pt`` (``supernet_<phase>.pt`` after each phase).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facenas.config import TypedConfig
from facenas.engine.loop import Diverged, LoopState, LoopTask
from facenas.errors import ConfigError, DataFormatError, FacenasError
from facenas.nas.report import Reporter
from facenas.nas.results import CONFIG as CONFIG_FILE
from facenas.utils.io import atomic_torch_save, write_json

from .network import OFASupernet, StageChoice
from .space import OFASpace

log = logging.getLogger(__name__)

SUPERNET_FORMAT = "facenas.ofa.supernet/1"


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
        output: output folder; resume: continue from ``output/checkpoint.pt``; overwrite: a fresh
            run may replace the run already in ``output`` (else it is refused).
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
    overwrite: bool = False
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
        if self.resume and self.overwrite:
            raise ConfigError(f"{source}: resume=True and overwrite=True: continue the run (--resume) or replace it "
                              "(--overwrite), not both")
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


def train_supernet(config: SupernetTrainConfig, reporter: Reporter | None = None, train_loader: Any | None = None,
                   evaluator: Callable[[nn.Module], Mapping[str, float]] | None = None,
                   on_step: Callable[[dict[str, Any]], None] | None = None) -> SupernetTrainResult:
    """Train a supernet by progressive shrinking on the shared loop (:mod:`facenas.engine.loop`).

    Args:
        config: the validated config.
        reporter: receives one intermediate metric dict per epoch and the final one.
        train_loader: batches of ``(images, labels)`` instead of ``get_dataloader(config.rec...)``.
        evaluator: ``model -> metrics`` instead of verification on ``val_targets``.
        on_step: called after every optimiser step with ``{"step", "epoch", "phase", "loss", "lr"}``
            (tests use it to interrupt a run).
    """
    from facenas.engine import distributed as D
    from facenas.engine.distributed import resolve_device

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
    from facenas.adapters.insightface.dataset import get_dataloader
    from facenas.adapters.insightface.losses import build_margin_head
    from facenas.adapters.insightface.partial_fc import PartialFC
    from facenas.engine.loop import Loop, LoopConfig
    from facenas.plugins.engine.trainer import data_num_classes
    from facenas.utils.seed import seed_everything

    seed_everything(cfg.seed + dist_info.rank)
    space = cfg.build_space()
    phases = cfg.phase_configs()
    for phase in phases:
        phase_candidates(space, phase)
    loader = train_loader if train_loader is not None else get_dataloader(
        cfg.rec, dist_info.local_rank, cfg.batch_size, seed=cfg.seed, num_workers=cfg.num_workers,
        image_size=cfg.image_size)
    found = data_num_classes(loader, cfg.rec)
    num_classes = cfg.num_classes or found
    if not num_classes:
        raise ConfigError(f"num_classes is 0 and the data at {cfg.rec!r} does not say how many identities it has")

    supernet = space.supernet().to(device)
    head = PartialFC(build_margin_head(cfg.margin_head, cfg.margin_list, cfg.margin_scale), space.embedding_size,
                     num_classes, cfg.sample_rate, False, seed=cfg.seed, label_smoothing=cfg.label_smoothing).to(device)
    if cfg.kd_ratio > 0 and cfg.kd_type == "logits" and (head.world_size > 1 or cfg.sample_rate < 1):
        raise ConfigError("kd_type='logits' needs all class centres in one process (sample_rate=1, one process); "
                          "use kd_type='embedding' with sharded or sampled PartialFC")
    model: nn.Module = supernet
    if dist_info.distributed:
        # wrapped before a resume loads this rank's checkpoint: DDP's constructor broadcasts rank 0's
        # parameters and buffers, and each rank's own BN statistics (broadcast_buffers=False) come after it
        model = nn.parallel.DistributedDataParallel(supernet, device_ids=[dist_info.local_rank] if device.type == "cuda"
                                                    else None, find_unused_parameters=True, broadcast_buffers=False)
    evaluate = evaluator
    if evaluate is None and cfg.val_targets and dist_info.is_main:
        evaluate = _make_evaluator(cfg, space)
    task = _SupernetTask(cfg, space, phases, loader, supernet, model, head, device, evaluate, dist_info.is_main)
    loop = Loop(task, LoopConfig(output=cfg.output, resume=cfg.resume, overwrite=cfg.overwrite,
                                 checkpoint_every=cfg.checkpoint_every, max_minutes=cfg.max_minutes, log_every=20),
                settings=cfg.to_dict(), reporter=reporter, on_step=on_step, dist_info=dist_info,
                run_files=("supernet.pt", *(f"supernet_{p.name}.pt" for p in phases)))
    task.log = loop.log_json
    loop.claim_output()
    if dist_info.is_main:
        write_json(Path(cfg.output) / CONFIG_FILE, {**cfg.to_dict(), "num_classes": num_classes,
                                                    "steps_per_epoch": task.steps_per_epoch,
                                                    "space_description": space.config()})
    final = loop.run()
    st = loop.state
    supernet.eval()
    return SupernetTrainResult(final, cfg.output, st.global_step, st.train_seconds, st.stopped_early, space, supernet)


class _SupernetTask(LoopTask):
    """Progressive shrinking as a :class:`LoopTask`: the phases laid end to end as loop epochs.

    Phase ``i`` with ``epochs`` e takes ``round(e x steps_per_epoch)`` steps over
    ``ceil(steps / steps_per_epoch)`` loop epochs, its last one cut short (:meth:`epoch_steps`).
    ``state.extra`` holds ``phase`` (its index), ``step_in_phase`` and ``phase_started``. A phase
    starts (channel sorting, the distillation teacher, a fresh optimiser and schedule) at the end of
    the phase before it, so the checkpoint at that boundary already holds it and a run resumed there
    draws the same random numbers as one that went on; the first phase starts in :meth:`start_epoch`.
    A phase ends (in :meth:`end_epoch`) with the largest and smallest subnet evaluated and
    ``supernet_<phase>.pt``.
    """

    desc = "ofa"

    def __init__(self, cfg: SupernetTrainConfig, space: OFASpace, phases: list[PhaseConfig], loader: Any,
                 supernet: OFASupernet, model: nn.Module, head: nn.Module, device: torch.device,
                 evaluate: Callable | None, is_main: bool):
        self.cfg, self.space, self.phases, self.loader = cfg, space, phases, loader
        self.supernet, self.model, self.head, self.device = supernet, model, head, device
        self.evaluate, self.is_main = evaluate, is_main
        self.out = Path(cfg.output)
        generator = getattr(loader, "generator", None)
        self.data_generator = generator if isinstance(generator, torch.Generator) else None
        self.steps_per_epoch = spe = len(loader)
        self.phase_steps = [max(1, int(round(p.epochs * spe))) for p in phases]
        self.phase_epochs = [max(1, math.ceil(n / max(spe, 1))) for n in self.phase_steps]
        self.first_epoch = [sum(self.phase_epochs[:i]) for i in range(len(phases))]
        # the sampler's epoch numbers count ceil(epochs) per phase (the data order of earlier runs)
        self.sampler_offset = [sum(math.ceil(p.epochs) for p in phases[:i]) for i in range(len(phases))]
        self.epochs = sum(self.phase_epochs)
        self.teacher: nn.Module | None = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.phase_metrics: dict[str, float] = {}  # the latest end-of-phase evaluation
        self.last_loss = float("nan")
        self.epoch_losses: list[float] = []
        self.log: Callable[[Mapping[str, Any]], None] = lambda record: None

    # -- phases -------------------------------------------------------------------------------------
    @staticmethod
    def _where(state: LoopState) -> dict[str, Any]:
        for key, value in (("phase", 0), ("step_in_phase", 0), ("phase_started", False)):
            state.extra.setdefault(key, value)
        return state.extra

    def _make_optimizer(self, phase: PhaseConfig, total: int) -> tuple[Any, Any]:
        from facenas.engine.optim import PolynomialLRWarmup, build_optimizer, param_groups

        opt = build_optimizer("sgd", param_groups(self.supernet, self.head), phase.lr, self.cfg.weight_decay,
                              self.cfg.momentum)
        warm = min(int(phase.warmup_epoch * self.steps_per_epoch), total - 1)
        return opt, PolynomialLRWarmup(opt, warm, total, self.cfg.lr_power)

    def _start_phase(self, where: dict[str, Any]) -> None:
        i = where["phase"]
        phase = self.phases[i]
        if phase.sort_channels:
            self.supernet.sort_channels_by_importance()
            log.info("phase %s: hidden channels sorted by importance", phase.name)
        if self.cfg.kd_ratio > 0 and self.teacher is None and i > 0:
            self.teacher = _make_teacher(self.supernet)
            log.info("phase %s: the full network is the distillation teacher", phase.name)
        self.optimizer, self.scheduler = self._make_optimizer(phase, self.phase_steps[i])
        where["phase_started"] = True

    def total_steps(self) -> int:
        return sum(self.phase_steps)

    def start_epoch(self, state: LoopState) -> None:
        where = self._where(state)
        if not where["phase_started"]:
            self._start_phase(where)
        i = where["phase"]
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # a new data order every epoch, the same on resume
            sampler.set_epoch(self.sampler_offset[i] + state.epoch - self.first_epoch[i])
        self.model.train()
        self.head.train()
        self.epoch_losses = []

    def epoch_steps(self, state: LoopState) -> int:
        i = self._where(state)["phase"]
        return self.phase_steps[i] - (state.epoch - self.first_epoch[i]) * self.steps_per_epoch

    def batches(self, state: LoopState) -> Any:
        return self.loader

    def step(self, batch: Any, state: LoopState) -> dict[str, Any]:
        cfg, where = self.cfg, self._where(state)
        phase = self.phases[where["phase"]]
        images, labels = batch[0].to(self.device), batch[1].to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss_value = 0.0
        n_sub = phase.subnets_per_step
        t_emb = None
        if self.teacher is not None and cfg.kd_ratio > 0:
            with torch.no_grad():
                t_emb = self.teacher(images)
        ddp = isinstance(self.model, nn.parallel.DistributedDataParallel)
        for i in range(n_sub):
            self.supernet.set_active(sample_subnet(self.space, phase, subnet_rng(cfg.seed, state.global_step, i)))
            # DDP reduces the gradients once, with the last subnet's backward
            with contextlib.nullcontext() if (i == n_sub - 1 or not ddp) else self.model.no_sync():
                emb = self.model(images)
                loss = self.head(emb, labels)
                if t_emb is not None:
                    loss = loss + cfg.kd_ratio * distillation_loss(cfg.kd_type, emb, t_emb, self.head,
                                                                   cfg.margin_scale, cfg.kd_temperature)
                if not torch.isfinite(loss):
                    raise Diverged(f"the loss (phase {phase.name}, subnet {i})", float(loss.detach()),
                                   f"lower phase {phase.name}'s lr ({phase.lr}) and resume from the last good "
                                   "checkpoint, or train again", lr=self.optimizer.param_groups[0]["lr"])
                (loss / n_sub).backward()
            loss_value += float(loss.detach()) / n_sub
        if cfg.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), cfg.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        where["step_in_phase"] += 1
        self.last_loss = loss_value
        self.epoch_losses.append(loss_value)
        return {"loss": loss_value, "lr": self.optimizer.param_groups[0]["lr"], "phase": phase.name}

    def end_epoch(self, state: LoopState) -> dict[str, Any]:
        if state.stopped_early:  # the time budget: the epoch (and the phase) goes on after a resume
            return {}
        where = self._where(state)
        i = where["phase"]
        phase = self.phases[i]
        loss = float(np.mean(self.epoch_losses)) if self.epoch_losses else self.last_loss
        metrics = {"phase": phase.name, "phase_index": i, "phase_epoch": state.epoch - self.first_epoch[i],
                   "loss": loss, "default": -loss}
        if state.epoch == self.first_epoch[i] + self.phase_epochs[i]:
            self._end_phase(state, where)
        return metrics

    def _end_phase(self, state: LoopState, where: dict[str, Any]) -> None:
        """Evaluate the largest and smallest subnet, write ``supernet_<phase>.pt``, start the next phase."""
        phase = self.phases[where["phase"]]
        if self.evaluate is not None and self.is_main:
            self.phase_metrics = _evaluate_extremes(self.space, self.supernet, self.evaluate, self.cfg, phase)
            self.log({"type": "val", "phase": phase.name, "step": state.global_step, **self.phase_metrics})
            log.info("after phase %s: %s", phase.name, self.phase_metrics)
        if self.is_main:
            save_supernet(self.out / f"supernet_{phase.name}.pt", self.space, self.supernet,
                          {"phase": phase.name, "global_step": state.global_step})
        where.update(phase=where["phase"] + 1, step_in_phase=0, phase_started=False)
        if where["phase"] < len(self.phases):
            self._start_phase(where)

    def state_dict(self) -> dict[str, Any]:
        return {"supernet": self.supernet.state_dict(), "head": self.head.state_dict(),
                "teacher": self.teacher.state_dict() if self.teacher is not None else None,
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "phase_metrics": dict(self.phase_metrics), "last_loss": self.last_loss}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from facenas.adapters.insightface.backbones import load_state_dict_checked

        where = dict(state.get("extra") or {})
        if "supernet" not in state or "phase" not in where:
            raise DataFormatError(self.cfg.output, "the checkpoint is not an OFA supernet training checkpoint",
                                  "resume the run that wrote it with its own command, or train without --resume")
        load_state_dict_checked(self.supernet, state["supernet"], "checkpoint (supernet)")
        load_state_dict_checked(self.head, state["head"], "checkpoint (head)")
        if state.get("teacher") is not None:
            self.teacher = self.space.build(self.space.largest()).to(self.device)
            load_state_dict_checked(self.teacher, state["teacher"], "checkpoint (teacher)")
            self.teacher.eval().requires_grad_(False)
        i = where["phase"]
        if where.get("phase_started") and i < len(self.phases) and state.get("optimizer") is not None:
            self.optimizer, self.scheduler = self._make_optimizer(self.phases[i], self.phase_steps[i])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        self.phase_metrics = dict(state.get("phase_metrics") or {})
        self.last_loss = float(state.get("last_loss", float("nan")))
        log.info("resuming phase %d (%s)", i, self.phases[min(i, len(self.phases) - 1)].name)

    def final(self, state: LoopState) -> dict[str, Any]:
        final: dict[str, Any] = {"loss": self.last_loss, "phases_done": self._where(state)["phase"],
                                 **self.phase_metrics}
        if self.is_main:
            save_supernet(self.out / "supernet.pt", self.space, self.supernet,
                          {"global_step": state.global_step, "phases_done": final["phases_done"],
                           "config": self.cfg.to_dict()})
            final["supernet"] = str(self.out / "supernet.pt")
            acc_keys = [k for k in final if k.startswith("largest_") and k.endswith("_acc")]
            final["default"] = float(final[acc_keys[0]]) if acc_keys else -float(self.last_loss)
        return final


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
