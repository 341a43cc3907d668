"""The TNAS search (TNAS Algorithm 1): alternating weight and architecture updates of the
supernet against a frozen teacher's features, with a FLOPs budget.

Per iteration (Algorithm 1):

1. a batch of the *train* split updates the supernet weights ``w`` with ``L_train = H(F_S, F_T)``
   (Eq. 9) under one Gumbel selection of widths/depths (SGD, lr 0.1, cosine schedule);
2. a batch of the *val* split updates the architecture logits ``A`` with
   ``L_val = H(F_S, F_T) + lambda * L_cost`` (Eq. 10; Adam, lr 1e-3, weight decay 1e-3,
   lambda 2), ``L_cost`` being Eq. 11 on the expected FLOPs with tolerance ``t`` around ``R``.

The temperature of Eq. 5 decays linearly from 10 to 0.1 over the run; ``|I| = 2`` candidates are
mixed per choice. After the last epoch the derived architecture is each choice's most probable
candidate. Every epoch reports the architecture entropy, the expected and the derived FLOPs and
the distillation losses. The search runs on the shared loop (:mod:`facenas.engine.loop`): the
state is checkpointed atomically (``checkpoint.pt``) at every epoch end and every
``checkpoint_every`` iterations, ``resume=True`` continues bit for bit (also after ``kill -9``),
and the run writes ``train_metrics.jsonl`` and ``final.json`` as every method does.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from facenas.config import TypedConfig, load_config_module
from facenas.engine.distributed import resolve_device
from facenas.engine.loop import Diverged, Loop, LoopConfig, LoopState, LoopTask
from facenas.errors import ConfigError, DataFormatError
from facenas.nas.report import Reporter
from facenas.nas.results import ARCH, CONFIG, arch_entry, with_architectures
from facenas.plugins.tnas.data import (
    EpochBatchSampler,
    KeyedFaceDataset,
    describe_data,
    keyed_loader,
    split_indices,
)
from facenas.plugins.tnas.derive import DERIVE_MODES, derive, log_probability
from facenas.plugins.tnas.ops import BELOW_FORMS, COST_ABOVE, COST_BELOW, cosine_lr, cost_loss, cost_regime, linear_temperature
from facenas.plugins.tnas.space import TnasSpace
from facenas.plugins.tnas.supernet import TnasSupernet
from facenas.plugins.tnas.teacher import (
    DISTILL_LOSSES,
    PROJECTIONS,
    DistillationLoss,
    TeacherFeatures,
    cache_identity,
    load_teacher,
)
from facenas.utils.io import read_json, write_json
from facenas.utils.seed import seed_everything

log = logging.getLogger(__name__)

#: the search's own files besides the loop's (``overwrite=True`` deletes them; the teacher cache is kept)
RUN_FILES = (ARCH, "argmax_arch.json", "search_history.json", "derive_moves.json")


@dataclasses.dataclass
class TnasSearchConfig(TypedConfig):
    """Configuration of a TNAS search (defaults: the paper's settings, Sec. "Searching").

    Fields:
        space: :class:`~facenas.plugins.tnas.space.TnasSpace` kwargs (e.g. ``{"base": "r50",
            "width_mult": 0.5, "input_size": 64, "embedding_size": 128}``).
        teacher: teacher checkpoint path (facenas / arcface_torch ``model.pt`` / ``.onnx``) or a
            spec dict (see :func:`~facenas.plugins.tnas.teacher.load_teacher`).
        teacher_network: arcface_torch network name for a bare ``model.pt`` teacher.
        rec: training data (``.rec`` folder, image folder or ``"synthetic"``).
        val_source: data of the architecture step: None = a ``val_fraction`` split of ``rec``;
            else a folder or a ``.bin`` whose images are used unlabelled (the paper uses LFW).
        val_fraction: share of ``rec`` held out for the architecture step.
        batch_size / arch_batch_size: images per weight / architecture step (None = batch_size).
        num_epoch: passes over the train split.
        lr, momentum, weight_decay, clip_grad_norm: SGD on the weights (cosine to 0).
        arch_lr, arch_weight_decay, arch_betas: Adam on the architecture logits.
        arch_warmup_epochs: epochs of weight-only training before architecture steps start.
        cost_lambda: lambda of Eq. 10.
        tolerance: t of Eq. 11.
        target_mflops / target_width_ratio: the target R -- MFLOPs, or the FLOPs of the
            uniformly narrowed network at that width ratio (full depth). Exactly one is set.
        cost_below: ``inv_log`` (Eq. 11's ``1/log E``) or ``neg_log`` (TAS's ``-log E``).
        tau_max / tau_min: temperature, decayed linearly per iteration.
        num_sampled: ``|I|``, candidates mixed per choice.
        derive: ``argmax`` (the paper) or ``argmax_in_budget`` (the argmax, moved into the
            tolerance band by the most probable single-choice changes when it lies outside;
            see :mod:`~facenas.plugins.tnas.derive`).
        distill_loss: ``l2`` (``||F_S - F_T||``, Eq. 2) or ``mse``.
        projection: student->teacher embedding projection: ``auto`` / ``linear`` / ``none``.
        teacher_cache: cache teacher embeddings per (image, flip); ``teacher_cache_file`` shares
            them between runs (default ``<output>/teacher_cache.pt``).
        seed, threads, device, num_workers: reproducibility and resources.
        output: output folder; resume: continue from ``<output>/checkpoint.pt``; overwrite: replace
            a previous run in ``output`` (a fresh run refuses a used folder).
        checkpoint_every: also checkpoint every this many iterations (0 = epoch ends only).
        frequent: write a train record to ``train_metrics.jsonl`` every this many iterations (0 = none).
        max_minutes: stop (checkpointed, with the current argmax derived) after this long.
    """

    space: dict[str, Any] = dataclasses.field(default_factory=dict)
    teacher: str | dict[str, Any] = ""
    teacher_network: str | None = None
    rec: str = ""
    val_source: str | None = None
    val_fraction: float = 0.5
    batch_size: int = 64
    arch_batch_size: int | None = None
    num_epoch: int = 10
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_grad_norm: float = 5.0
    arch_lr: float = 1e-3
    arch_weight_decay: float = 1e-3
    arch_betas: tuple[float, float] = (0.9, 0.999)
    arch_warmup_epochs: int = 0
    cost_lambda: float = 2.0
    tolerance: float = 0.05
    target_mflops: float | None = None
    target_width_ratio: float | None = None
    cost_below: str = "neg_log"
    tau_max: float = 10.0
    tau_min: float = 0.1
    num_sampled: int = 2
    derive: str = "argmax_in_budget"
    distill_loss: str = "l2"
    projection: str = "auto"
    teacher_cache: bool = True
    teacher_cache_file: str | None = None
    seed: int = 2048
    threads: int | None = None
    device: str = "auto"
    num_workers: int = 0
    output: str | None = None
    resume: bool = False
    overwrite: bool = False
    checkpoint_every: int = 0
    frequent: int = 10
    max_minutes: float | None = None

    def check(self, source: str) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"{source}: {field}={getattr(self, field)!r} {why}")

        if not self.teacher:
            raise bad("teacher", "is empty; give a teacher checkpoint / .onnx path or a spec dict")
        if not self.rec:
            raise bad("rec", "is empty; give a .rec/.idx folder, an image folder or 'synthetic'")
        if (self.target_mflops is None) == (self.target_width_ratio is None):
            raise ConfigError(f"{source}: set exactly one of target_mflops / target_width_ratio "
                              f"(got {self.target_mflops!r} / {self.target_width_ratio!r})")
        if self.target_mflops is not None and self.target_mflops <= 0:
            raise bad("target_mflops", "must be > 0")
        for name in ("batch_size", "num_epoch", "num_sampled"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        if self.arch_batch_size is not None and self.arch_batch_size < 1:
            raise bad("arch_batch_size", "must be None or >= 1")
        if not 0 <= self.arch_warmup_epochs < self.num_epoch:
            raise bad("arch_warmup_epochs", f"must be in [0, num_epoch={self.num_epoch})")
        if not 0 <= self.tolerance < 1:
            raise bad("tolerance", "must be in [0, 1)")
        if not 0 < self.tau_min <= self.tau_max:
            raise ConfigError(f"{source}: need 0 < tau_min <= tau_max (got {self.tau_min}, {self.tau_max})")
        if self.lr <= 0 or self.arch_lr <= 0 or self.weight_decay < 0 or self.arch_weight_decay < 0:
            raise ConfigError(f"{source}: learning rates must be > 0 and weight decays >= 0")
        if self.cost_lambda < 0:
            raise bad("cost_lambda", "must be >= 0")
        if self.derive not in DERIVE_MODES:
            raise bad("derive", f"is not one of {list(DERIVE_MODES)}")
        if self.cost_below not in BELOW_FORMS:
            raise bad("cost_below", f"is not one of {list(BELOW_FORMS)}")
        if self.distill_loss not in DISTILL_LOSSES:
            raise bad("distill_loss", f"is not one of {list(DISTILL_LOSSES)}")
        if self.projection not in PROJECTIONS:
            raise bad("projection", f"is not one of {list(PROJECTIONS)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise bad("device", "is not one of ['auto', 'cpu', 'cuda']")
        if self.checkpoint_every < 0 or self.num_workers < 0 or self.frequent < 0:
            raise ConfigError(f"{source}: checkpoint_every, frequent and num_workers must be >= 0")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise bad("max_minutes", "must be None or > 0")


def load_search_config(source: str | Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> TnasSearchConfig:
    """A search config from a recipe module (``config = TnasSearchConfig(...)``) or a dict, plus overrides."""
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        data = load_config_module(source, TnasSearchConfig).to_dict()
    data.update(dict(overrides or {}))
    return TnasSearchConfig.from_dict(data, source=str(source) if not isinstance(source, Mapping) else "tnas search")


@dataclasses.dataclass
class SearchResult:
    """What :func:`run_search` returns: the derived sample and description, final metrics, history."""

    sample: dict[str, Any]
    description: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    output: str
    stopped_early: bool


def resolve_target(space: TnasSpace, cfg: TnasSearchConfig) -> float:
    """R in MACs."""
    if cfg.target_mflops is not None:
        return float(cfg.target_mflops) * 1e6
    return float(space.flops(space.uniform(float(cfg.target_width_ratio))))


class _Cycle:
    """An endless, resumable iterator over a sampler's epochs (the architecture step's data)."""

    def __init__(self, dataset: KeyedFaceDataset, sampler: EpochBatchSampler, num_workers: int):
        self.dataset, self.sampler, self.num_workers = dataset, sampler, num_workers
        self.epoch, self.batch = 0, 0
        self._it: Iterator | None = None

    def next(self):
        while True:
            if self._it is None:
                self.sampler.set_epoch(self.epoch, self.batch)
                self._it = iter(keyed_loader(self.dataset, self.sampler, self.num_workers))
            try:
                item = next(self._it)
                self.batch += 1
                return item
            except StopIteration:
                self._it = None
                self.epoch, self.batch = self.epoch + 1, 0


def run_search(cfg: TnasSearchConfig, reporter: Reporter | None = None,
               on_step: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
    """Run (or resume) a TNAS search; see the module docstring. Writes into ``cfg.output``:

    ``checkpoint.pt``, ``train_metrics.jsonl`` and ``final.json`` (the shared loop's files),
    per-epoch records in ``search_history.json``, ``arch.json`` (the derived architecture,
    ``facenas.arch/1``), ``argmax_arch.json``, ``config.json`` and ``teacher_cache.pt``.
    """
    from facenas.utils.lock import output_lock

    cfg.validate("tnas search config")
    with output_lock(cfg.output or "work_dirs/tnas_search", "TNAS search"):  # one writer per output folder
        return _run_search(cfg, reporter, on_step)


def _run_search(cfg: TnasSearchConfig, reporter: Reporter | None,
                on_step: Callable[[dict[str, Any]], None] | None) -> SearchResult:
    out = Path(cfg.output or "work_dirs/tnas_search")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    task = TnasSearch(cfg, out)
    loop = Loop(task, LoopConfig(output=str(out), resume=cfg.resume, overwrite=cfg.overwrite,
                                 checkpoint_every=cfg.checkpoint_every, max_minutes=cfg.max_minutes,
                                 log_every=cfg.frequent),
                settings=cfg.to_dict(), reporter=reporter, on_step=on_step, run_files=RUN_FILES)
    loop.claim_output()  # refuse a used folder before loading data and the teacher
    task.build(device)
    write_json(out / CONFIG, {**cfg.to_dict(), "space_resolved": task.space.config(), "target_flops": task.target,
                              "steps_per_epoch": task.steps_per_epoch, "total_steps": task.total,
                              "teacher_dim": task.teacher_dim})
    log.info("TNAS search: %d choices, target %.2f MFLOPs (+-%.0f%%), space %.2f..%.2f MFLOPs, %d iterations",
             len(task.supernet.labels), task.target / 1e6, cfg.tolerance * 100, task.smallest / 1e6,
             task.largest / 1e6, task.total)
    final = loop.run()
    if task.description is None:
        raise DataFormatError(str(out / ARCH), "the derived architecture of this finished search is missing",
                              "search again into this folder with overwrite=True, or into a new output folder")
    return SearchResult(dict(task.description["sample"]), task.description, final, list(task.history), str(out),
                        bool(final.get("stopped_early")))


class TnasSearch(LoopTask):
    """Algorithm 1 on the shared loop: one step = a weight step on a train batch and (after
    ``arch_warmup_epochs``) an architecture step on the next batch of the endless val cycle.

    Besides the networks and optimisers, its checkpoint holds the Gumbel generator, the val
    cycle's position, the running sums of the current epoch and the per-epoch history.
    """

    desc = "tnas search"

    def __init__(self, cfg: TnasSearchConfig, out: Path):
        self.cfg, self.out = cfg, out
        self.epochs = cfg.num_epoch
        try:
            self.space = TnasSpace(**cfg.space)
        except TypeError as exc:
            raise ConfigError(f"tnas search config: space={cfg.space} is not a valid TnasSpace config ({exc})") from None
        if self.space.input_size[0] != self.space.input_size[1]:
            raise ConfigError(f"tnas search needs a square input; space input_size={list(self.space.input_size)}")
        self.target = resolve_target(self.space, cfg)
        self.smallest = self.space.flops(self.space.smallest())
        self.largest = self.space.flops(self.space.largest())
        if not self.smallest <= self.target <= self.largest:
            raise ConfigError(f"target {self.target / 1e6:.2f} MFLOPs is outside the space's range "
                              f"[{self.smallest / 1e6:.2f}, {self.largest / 1e6:.2f}] MFLOPs; change "
                              "target_mflops/target_width_ratio")
        self.history: list[dict[str, Any]] = []
        self.sums = _zero_sums()
        self.description: dict[str, Any] | None = None

    def build(self, device: torch.device) -> None:
        """Data, teacher, supernet and optimisers (in this order: the global RNG seeds a projection)."""
        cfg, space, out = self.cfg, self.space, self.out
        self.device = device
        size = space.input_size[0]
        # data: train split for the weights, val split (or val_source) for the architecture
        self.dataset = KeyedFaceDataset(cfg.rec, image_size=size)
        if cfg.val_source:
            val_dataset = KeyedFaceDataset(cfg.val_source, image_size=size)
            train_idx, val_idx = list(range(len(self.dataset))), list(range(len(val_dataset)))
        else:
            val_dataset = self.dataset
            train_idx, val_idx = split_indices(len(self.dataset), cfg.val_fraction, cfg.seed)
        self.train_sampler = EpochBatchSampler(train_idx, cfg.batch_size, seed=cfg.seed)
        val_sampler = EpochBatchSampler(val_idx, cfg.arch_batch_size or cfg.batch_size, seed=cfg.seed + 1)
        self.val_cycle = _Cycle(val_dataset, val_sampler, cfg.num_workers)
        # teacher
        teacher = load_teacher(cfg.teacher, cfg.teacher_network).to(device)
        ident = cache_identity(cfg.teacher, describe_data(cfg.rec, size), size, len(self.dataset))
        self.t_train = TeacherFeatures(teacher, len(self.dataset), cfg.teacher_cache, ident)
        self.cache_file = Path(cfg.teacher_cache_file) if cfg.teacher_cache_file else out / "teacher_cache.pt"
        if cfg.teacher_cache:
            self.t_train.load(self.cache_file)
        if val_dataset is self.dataset:
            self.t_val = self.t_train
        else:
            self.t_val = TeacherFeatures(teacher, len(val_dataset), cfg.teacher_cache,
                                         cache_identity(cfg.teacher, describe_data(cfg.val_source or "", size), size,
                                                        len(val_dataset)))
        self.teacher_dim = self.t_train.embedding_size((3, size, size))
        # model, losses, optimisers
        self.supernet = TnasSupernet(space, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
        self.distill = DistillationLoss(space.embedding_size, self.teacher_dim, cfg.projection,
                                        cfg.distill_loss).to(device)
        self.w_params = self.supernet.weight_parameters() + [p for p in self.distill.parameters()]
        self.w_opt = torch.optim.SGD(self.w_params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.a_opt = torch.optim.Adam(self.supernet.arch_parameters(), lr=cfg.arch_lr, betas=tuple(cfg.arch_betas),
                                      weight_decay=cfg.arch_weight_decay)
        self.gumbel = torch.Generator()
        self.gumbel.manual_seed(cfg.seed)
        self.steps_per_epoch = len(self.train_sampler)
        self.total = self.steps_per_epoch * cfg.num_epoch

    # -- the loop's hooks ---------------------------------------------------------------------------
    def total_steps(self) -> int:
        return self.total

    def epoch_data(self, state: LoopState, skip: int) -> Iterator:
        self.train_sampler.set_epoch(state.epoch, skip)  # starts after the skipped batches without loading them
        return iter(keyed_loader(self.dataset, self.train_sampler, self.cfg.num_workers))

    def step(self, batch: Any, state: LoopState) -> dict[str, Any]:
        cfg, supernet, space = self.cfg, self.supernet, self.space
        images, _labels, indices, flipped = batch
        step = state.global_step
        tau = linear_temperature(step, self.total, cfg.tau_max, cfg.tau_min)
        lr = cosine_lr(step, self.total, cfg.lr)
        for group in self.w_opt.param_groups:
            group["lr"] = lr
        supernet.train()
        images = images.to(self.device)
        # 1. weights on the train split, L_train (Eq. 9)
        feats_t = self.t_train(images, indices, flipped)
        feats_s = supernet(images, supernet.select(tau, cfg.num_sampled, self.gumbel, differentiable=False))
        loss_w = self.distill(feats_s, feats_t)
        if not math.isfinite(loss_w.item()):
            raise Diverged("the distillation loss", loss_w.item(),
                           f"lower lr (now {cfg.lr}) or clip_grad_norm (now {cfg.clip_grad_norm}) and start the "
                           "search again (overwrite=True)", lr=lr)
        self.w_opt.zero_grad(set_to_none=True)
        loss_w.backward()
        if cfg.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.w_params, cfg.clip_grad_norm)
        self.w_opt.step()
        # 2. architecture on the val split, L_val = H + lambda * L_cost (Eqs. 10-11)
        record: dict[str, Any] = {"loss": loss_w.item(), "lr": lr, "tau": tau}
        if state.epoch >= cfg.arch_warmup_epochs:
            v_images, _vl, v_idx, v_flip = self.val_cycle.next()
            v_images = v_images.to(self.device)
            v_t = self.t_val(v_images, v_idx, v_flip)
            v_s = supernet(v_images, supernet.select(tau, cfg.num_sampled, self.gumbel, differentiable=True))
            loss_d = self.distill(v_s, v_t)
            expected = supernet.expected_flops()
            actual = space.flops(supernet.argmax_sample())
            loss_c, regime = cost_loss(expected, actual, self.target, cfg.tolerance, cfg.cost_below)
            loss_a = loss_d + cfg.cost_lambda * loss_c
            params = supernet.arch_parameters()
            grads = torch.autograd.grad(loss_a, params, allow_unused=True)
            self.a_opt.zero_grad(set_to_none=True)
            for p, g in zip(params, grads):
                p.grad = torch.zeros_like(p) if g is None else g
            self.a_opt.step()
            record.update(val_distill_loss=loss_d.item(), cost_loss=loss_c.item(), regime=regime,
                          expected_mflops=expected.item() / 1e6, argmax_mflops=actual / 1e6)
        _accumulate(self.sums, record)
        return record

    def end_epoch(self, state: LoopState) -> dict[str, Any]:
        """The epoch's record (appended to the history); at the time budget, the partial epoch's."""
        metrics = _epoch_metrics(self.sums, state, self.supernet, self.space, self.target, self.cfg.tolerance)
        if not state.stopped_early:  # a partial epoch goes on accumulating when the search resumes
            self.history.append(metrics)
            self.sums = _zero_sums()
        log.info("epoch %d: %s", metrics["epoch"], {k: round(v, 4) if isinstance(v, float) else v
                                                    for k, v in metrics.items() if k != "arch"})
        return metrics

    def after_checkpoint(self, state: LoopState, reason: str) -> None:
        if self.cfg.teacher_cache:
            self.t_train.save(self.cache_file)

    def state_dict(self) -> dict[str, Any]:
        return {"supernet": self.supernet.state_dict(), "distill": self.distill.state_dict(),
                "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(), "gumbel": self.gumbel.get_state(),
                "val_cycle": {"epoch": self.val_cycle.epoch, "batch": self.val_cycle.batch},
                "history": list(self.history), "sums": dict(self.sums)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.distill.load_state_dict(state["distill"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.gumbel.set_state(state["gumbel"])
        self.val_cycle.epoch, self.val_cycle.batch = int(state["val_cycle"]["epoch"]), int(state["val_cycle"]["batch"])
        self.history = list(state["history"])
        self.sums = dict(state["sums"])

    def final(self, state: LoopState) -> dict[str, Any]:
        """Derive the architecture (``arch.json``) and describe it; the loop adds its own fields."""
        cfg, space, supernet, out = self.cfg, self.space, self.supernet, self.out
        target = self.target
        with torch.no_grad():
            logprobs = {label: torch.log_softmax(a.detach().float().cpu(), -1).tolist()
                        for label, a in zip(supernet.labels, supernet.arch_logits)}
        derivation = derive(space, logprobs, target, cfg.tolerance, cfg.derive)
        sample = space.validate(derivation.sample)
        write_json(out / "argmax_arch.json", space.describe(derivation.argmax))
        write_json(out / "search_history.json", self.history)
        derived = derivation.flops
        aw = space.widths(sample)
        last = self.history[-1] if self.history else {}
        metrics: dict[str, Any] = {
            "mflops": derived / 1e6, "target_mflops": target / 1e6, "flops_ratio": derived / target,
            "within_tolerance": derivation.within, "tolerance": cfg.tolerance,
            "argmax_mflops": derivation.argmax_flops / 1e6,
            "argmax_within_tolerance": cost_regime(derivation.argmax_flops, target, cfg.tolerance)
            not in (COST_ABOVE, COST_BELOW),
            "derive": cfg.derive, "repair_moves": len(derivation.moves),
            "log_prob": log_probability(space, logprobs, sample),
            "argmax_log_prob": log_probability(space, logprobs, derivation.argmax),
            "params_m": space.params(sample) / 1e6,
            "largest_mflops": self.largest / 1e6, "depths": list(aw.depths), "stage_widths": list(aw.stages),
            "stem_width": aw.stem, "inner_widths": [list(m) for m in aw.inner],
            "epochs": state.epoch + (state.step_in_epoch / self.steps_per_epoch if state.stopped_early else 0.0),
            "arch_entropy": supernet.entropy()["arch_entropy"],
            "teacher_images_computed": self.t_train.computed,
        }
        if derivation.moves:
            write_json(out / "derive_moves.json", derivation.moves)
        else:
            (out / "derive_moves.json").unlink(missing_ok=True)  # a previous derivation's, when resumed
        for key in ("val_distill_loss", "distill_loss", "expected_mflops"):
            if key in last:
                metrics[key] = last[key]
        metrics["per_epoch"] = convergence(self.history)
        metrics["default"] = -float(metrics.get("val_distill_loss", metrics.get("distill_loss", 0.0)))
        entry = arch_entry(space.describe(sample), out / ARCH, mflops=metrics["mflops"],
                           within_tolerance=metrics["within_tolerance"])
        self.description = entry["arch"]
        log.info("derived architecture: %.2f MFLOPs (target %.2f, %s tolerance; argmax %.2f MFLOPs, %d repair moves), "
                 "depths %s, stage widths %s", derived / 1e6, target / 1e6,
                 "within" if metrics["within_tolerance"] else "OUTSIDE", derivation.argmax_flops / 1e6,
                 len(derivation.moves), aw.depths, aw.stages)
        return with_architectures(metrics, [entry])

    def finished(self, final: Mapping[str, Any]) -> None:
        """A finished search resumed: its result is the ``arch.json`` it derived."""
        path = self.out / ARCH
        if path.is_file():
            self.description = read_json(path)


#: per-epoch fields of the search's final ``per_epoch`` (how the architecture distribution converged)
CONVERGENCE_KEYS = ("epoch", "arch_entropy", "arch_entropy_norm", "expected_mflops", "argmax_mflops", "target_mflops",
                    "argmax_within_tolerance", "frac_within", "val_distill_loss", "distill_loss")


def convergence(history: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The per-epoch convergence record a search's final metrics carry (the trial record keeps it):
    :data:`CONVERGENCE_KEYS` of each epoch plus ``argmax_final`` -- whether that epoch's argmax
    architecture is already the last epoch's (a converged search keeps it over its last epochs)."""
    last = (history[-1].get("arch") if history else None) or {}
    return [{**{k: e[k] for k in CONVERGENCE_KEYS if k in e}, "argmax_final": bool(last) and e.get("arch") == last}
            for e in history]


def _zero_sums() -> dict[str, float]:
    return {"n": 0.0, "n_arch": 0.0, "distill_loss": 0.0, "val_distill_loss": 0.0, "cost_loss": 0.0,
            "above": 0.0, "within": 0.0, "below": 0.0}


def _accumulate(sums: dict[str, float], record: Mapping[str, Any]) -> None:
    sums["n"] += 1
    sums["distill_loss"] += record["loss"]
    if "val_distill_loss" in record:
        sums["n_arch"] += 1
        sums["val_distill_loss"] += record["val_distill_loss"]
        sums["cost_loss"] += record["cost_loss"]
        sums[record["regime"]] += 1


def _epoch_metrics(sums: Mapping[str, float], state: LoopState, supernet: TnasSupernet, space: TnasSpace,
                   target: float, tolerance: float) -> dict[str, Any]:
    n, na = max(1.0, sums["n"]), sums["n_arch"]
    sample = supernet.argmax_sample()
    with torch.no_grad():
        expected = float(supernet.expected_flops())
    argmax = space.flops(sample)
    m: dict[str, Any] = {
        "epoch": state.epoch, "step": state.global_step,
        "distill_loss": sums["distill_loss"] / n,
        **supernet.entropy(),
        "expected_mflops": expected / 1e6, "argmax_mflops": argmax / 1e6, "target_mflops": target / 1e6,
        "argmax_within_tolerance": float(cost_regime(argmax, target, tolerance) not in (COST_ABOVE, COST_BELOW)),
        "train_seconds": round(state.train_seconds, 2),
    }
    if na:
        m.update(val_distill_loss=sums["val_distill_loss"] / na, cost_loss=sums["cost_loss"] / na,
                 frac_above=sums["above"] / na, frac_within=sums["within"] / na, frac_below=sums["below"] / na)
    m["default"] = -float(m.get("val_distill_loss", m["distill_loss"]))
    m["arch"] = dict(sample)
    return m


__all__ = ["TnasSearchConfig", "TnasSearch", "SearchResult", "convergence", "load_search_config", "resolve_target", "run_search",
           "COST_BELOW"]
