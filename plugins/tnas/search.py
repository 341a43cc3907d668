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
the distillation losses; the state is checkpointed atomically (``search_state.pt``) at every
epoch end and every ``checkpoint_every`` iterations, and ``resume=True`` continues bit for bit.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from facenas.engine.checkpoint import read_model_file
from facenas.config import TypedConfig, load_config_module
from facenas.errors import ConfigError, DataFormatError, FacenasError
from facenas.nas.report import Reporter
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
from facenas.utils.io import atomic_torch_save, write_json
from facenas.utils.progress import Progress
from facenas.utils.seed import seed_everything

log = logging.getLogger(__name__)

STATE_FORMAT = "facenas.tnas_search/1"


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
        output: output folder; resume: continue from ``<output>/search_state.pt``.
        checkpoint_every: also checkpoint every this many iterations (0 = epoch ends only).
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
    checkpoint_every: int = 0
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
        if self.checkpoint_every < 0 or self.num_workers < 0:
            raise ConfigError(f"{source}: checkpoint_every and num_workers must be >= 0")
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


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'")
    return torch.device(name)


def run_search(cfg: TnasSearchConfig, reporter: Reporter | None = None,
               on_step: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
    """Run (or resume) a TNAS search; see the module docstring. Writes into ``cfg.output``:

    ``search_state.pt`` (checkpoint), per-epoch records in ``search_history.json``, ``arch.json``
    (the derived architecture, ``facenas.arch/1``), ``argmax_arch.json``, ``search_final.json``,
    ``config.json`` and ``teacher_cache.pt``.
    """
    from facenas.utils.lock import output_lock

    cfg.validate("tnas search config")
    with output_lock(cfg.output or "work_dirs/tnas_search", "TNAS search"):  # one writer per output folder
        return _run_search(cfg, reporter, on_step)


def _run_search(cfg: TnasSearchConfig, reporter: Reporter | None,
                on_step: Callable[[dict[str, Any]], None] | None) -> SearchResult:
    out = Path(cfg.output or "work_dirs/tnas_search")
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    seed_everything(cfg.seed)
    try:
        space = TnasSpace(**cfg.space)
    except TypeError as exc:
        raise ConfigError(f"tnas search config: space={cfg.space} is not a valid TnasSpace config ({exc})") from None
    if space.input_size[0] != space.input_size[1]:
        raise ConfigError(f"tnas search needs a square input; space input_size={list(space.input_size)}")
    size = space.input_size[0]
    target = resolve_target(space, cfg)
    smallest, largest = space.flops(space.smallest()), space.flops(space.largest())
    if not smallest <= target <= largest:
        raise ConfigError(f"target {target / 1e6:.2f} MFLOPs is outside the space's range "
                          f"[{smallest / 1e6:.2f}, {largest / 1e6:.2f}] MFLOPs; change target_mflops/target_width_ratio")

    # data: train split for the weights, val split (or val_source) for the architecture
    dataset = KeyedFaceDataset(cfg.rec, image_size=size)
    if cfg.val_source:
        val_dataset = KeyedFaceDataset(cfg.val_source, image_size=size)
        train_idx, val_idx = list(range(len(dataset))), list(range(len(val_dataset)))
    else:
        val_dataset = dataset
        train_idx, val_idx = split_indices(len(dataset), cfg.val_fraction, cfg.seed)
    train_sampler = EpochBatchSampler(train_idx, cfg.batch_size, seed=cfg.seed)
    val_sampler = EpochBatchSampler(val_idx, cfg.arch_batch_size or cfg.batch_size, seed=cfg.seed + 1)
    val_cycle = _Cycle(val_dataset, val_sampler, cfg.num_workers)

    # teacher
    teacher = load_teacher(cfg.teacher, cfg.teacher_network).to(device)
    ident = cache_identity(cfg.teacher, describe_data(cfg.rec, size), size, len(dataset))
    t_train = TeacherFeatures(teacher, len(dataset), cfg.teacher_cache, ident)
    cache_file = Path(cfg.teacher_cache_file) if cfg.teacher_cache_file else out / "teacher_cache.pt"
    if cfg.teacher_cache:
        t_train.load(cache_file)
    if val_dataset is dataset:
        t_val = t_train
    else:
        t_val = TeacherFeatures(teacher, len(val_dataset), cfg.teacher_cache,
                                cache_identity(cfg.teacher, describe_data(cfg.val_source or "", size), size,
                                               len(val_dataset)))
    teacher_dim = t_train.embedding_size((3, size, size))

    # model, losses, optimisers
    supernet = TnasSupernet(space, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    distill = DistillationLoss(space.embedding_size, teacher_dim, cfg.projection, cfg.distill_loss).to(device)
    w_params = supernet.weight_parameters() + [p for p in distill.parameters()]
    w_opt = torch.optim.SGD(w_params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    a_opt = torch.optim.Adam(supernet.arch_parameters(), lr=cfg.arch_lr, betas=tuple(cfg.arch_betas),
                             weight_decay=cfg.arch_weight_decay)
    gumbel = torch.Generator()
    gumbel.manual_seed(cfg.seed)
    spe = len(train_sampler)
    total = spe * cfg.num_epoch

    st: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "seconds": 0.0, "history": [],
                          "sums": _zero_sums()}
    state_file = out / "search_state.pt"
    if cfg.resume:
        if not state_file.is_file():
            raise FacenasError(f"resume=True but {state_file} does not exist; run without resume first")
        ckpt = read_model_file(state_file)
        if not isinstance(ckpt, Mapping) or ckpt.get("format") != STATE_FORMAT:
            raise DataFormatError(str(state_file), f"not a TNAS search checkpoint ({STATE_FORMAT})")
        if ckpt["space"] != space.config():
            raise ConfigError(f"{state_file} was written for space {ckpt['space']}, not {space.config()}; "
                              "resume with the same space")
        supernet.load_state_dict(ckpt["supernet"])
        distill.load_state_dict(ckpt["distill"])
        w_opt.load_state_dict(ckpt["w_opt"])
        a_opt.load_state_dict(ckpt["a_opt"])
        gumbel.set_state(ckpt["gumbel"])
        torch.set_rng_state(ckpt["torch_rng"])
        val_cycle.epoch, val_cycle.batch = int(ckpt["val_epoch"]), int(ckpt["val_batch"])
        for key in ("epoch", "step_in_epoch", "global_step", "seconds", "history", "sums"):
            st[key] = ckpt[key]
        log.info("resumed TNAS search from %s at iteration %d (epoch %d)", state_file, st["global_step"], st["epoch"])
    write_json(out / "config.json", {**cfg.to_dict(), "space_resolved": space.config(), "target_flops": target,
                                     "steps_per_epoch": spe, "total_steps": total, "teacher_dim": teacher_dim})

    def checkpoint() -> None:
        atomic_torch_save({
            "format": STATE_FORMAT, "config": cfg.to_dict(), "space": space.config(),
            "supernet": supernet.state_dict(), "distill": distill.state_dict(), "w_opt": w_opt.state_dict(),
            "a_opt": a_opt.state_dict(), "gumbel": gumbel.get_state(), "torch_rng": torch.get_rng_state(),
            "val_epoch": val_cycle.epoch, "val_batch": val_cycle.batch,
            **{k: st[k] for k in ("epoch", "step_in_epoch", "global_step", "seconds", "history", "sums")},
        }, state_file)
        if cfg.teacher_cache:
            t_train.save(cache_file)

    log.info("TNAS search: %d choices, target %.2f MFLOPs (+-%.0f%%), space %.2f..%.2f MFLOPs, %d iterations",
             len(supernet.labels), target / 1e6, cfg.tolerance * 100, smallest / 1e6, largest / 1e6, total)
    progress = Progress(total, "tnas search", unit="it", interval=15.0, start=st["global_step"])
    stopped_early = False
    num_sampled = cfg.num_sampled

    while st["epoch"] < cfg.num_epoch and not stopped_early:
        train_sampler.set_epoch(st["epoch"], st["step_in_epoch"])
        arch_on = st["epoch"] >= cfg.arch_warmup_epochs
        t_last = time.monotonic()
        for images, _labels, indices, flipped in keyed_loader(dataset, train_sampler, cfg.num_workers):
            step = st["global_step"]
            tau = linear_temperature(step, total, cfg.tau_max, cfg.tau_min)
            lr = cosine_lr(step, total, cfg.lr)
            for group in w_opt.param_groups:
                group["lr"] = lr
            supernet.train()
            images = images.to(device)
            # 1. weights on the train split, L_train (Eq. 9)
            feats_t = t_train(images, indices, flipped)
            feats_s = supernet(images, supernet.select(tau, num_sampled, gumbel, differentiable=False))
            loss_w = distill(feats_s, feats_t)
            if not math.isfinite(loss_w.item()):
                raise FacenasError(f"TNAS search diverged: distillation loss {float(loss_w)} at iteration {step + 1}; "
                                   f"lower lr (now {cfg.lr}) and resume from {state_file}")
            w_opt.zero_grad(set_to_none=True)
            loss_w.backward()
            if cfg.clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(w_params, cfg.clip_grad_norm)
            w_opt.step()
            # 2. architecture on the val split, L_val = H + lambda * L_cost (Eqs. 10-11)
            record = {"step": step + 1, "epoch": st["epoch"], "tau": tau, "lr": lr, "distill_loss": loss_w.item()}
            if arch_on:
                v_images, _vl, v_idx, v_flip = val_cycle.next()
                v_images = v_images.to(device)
                v_t = t_val(v_images, v_idx, v_flip)
                v_s = supernet(v_images, supernet.select(tau, num_sampled, gumbel, differentiable=True))
                loss_d = distill(v_s, v_t)
                expected = supernet.expected_flops()
                actual = space.flops(supernet.argmax_sample())
                loss_c, regime = cost_loss(expected, actual, target, cfg.tolerance, cfg.cost_below)
                loss_a = loss_d + cfg.cost_lambda * loss_c
                params = supernet.arch_parameters()
                grads = torch.autograd.grad(loss_a, params, allow_unused=True)
                a_opt.zero_grad(set_to_none=True)
                for p, g in zip(params, grads):
                    p.grad = torch.zeros_like(p) if g is None else g
                a_opt.step()
                record.update(val_distill_loss=loss_d.item(), cost_loss=loss_c.item(), regime=regime,
                              expected_mflops=expected.item() / 1e6, argmax_mflops=actual / 1e6)
            _accumulate(st["sums"], record)
            st["global_step"] += 1
            st["step_in_epoch"] += 1
            now = time.monotonic()
            st["seconds"] += now - t_last
            t_last = now
            progress.update(1, loss=record["distill_loss"], tau=tau,
                            mflops=record.get("argmax_mflops", float("nan")))
            if on_step is not None:
                on_step(record)
            if cfg.checkpoint_every and st["global_step"] % cfg.checkpoint_every == 0:
                checkpoint()
                t_last = time.monotonic()
            if cfg.max_minutes is not None and st["seconds"] >= cfg.max_minutes * 60:
                log.warning("max_minutes=%s reached at iteration %d; stopping the search", cfg.max_minutes,
                            st["global_step"])
                stopped_early = True
                break
        if stopped_early and st["step_in_epoch"] < spe:
            checkpoint()
            break
        metrics = _epoch_metrics(st, supernet, space, target, cfg.tolerance)
        st["history"].append(metrics)
        st["epoch"] += 1
        st["step_in_epoch"] = 0
        st["sums"] = _zero_sums()
        checkpoint()
        if reporter is not None:
            reporter.intermediate({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        log.info("epoch %d: %s", metrics["epoch"], {k: round(v, 4) if isinstance(v, float) else v
                                                    for k, v in metrics.items() if k != "arch"})
    progress.close()

    with torch.no_grad():
        logprobs = {label: torch.log_softmax(a.detach().float().cpu(), -1).tolist()
                    for label, a in zip(supernet.labels, supernet.arch_logits)}
    derivation = derive(space, logprobs, target, cfg.tolerance, cfg.derive)
    sample = space.validate(derivation.sample)
    description = space.describe(sample)
    write_json(out / "arch.json", description)
    write_json(out / "argmax_arch.json", space.describe(derivation.argmax))
    write_json(out / "search_history.json", st["history"])
    derived = derivation.flops
    aw = space.widths(sample)
    last = st["history"][-1] if st["history"] else {}
    final = {
        "mflops": derived / 1e6, "target_mflops": target / 1e6, "flops_ratio": derived / target,
        "within_tolerance": derivation.within, "tolerance": cfg.tolerance,
        "argmax_mflops": derivation.argmax_flops / 1e6,
        "argmax_within_tolerance": cost_regime(derivation.argmax_flops, target, cfg.tolerance)
        not in (COST_ABOVE, COST_BELOW),
        "derive": cfg.derive, "repair_moves": len(derivation.moves),
        "log_prob": log_probability(space, logprobs, sample),
        "argmax_log_prob": log_probability(space, logprobs, derivation.argmax),
        "params_m": space.params(sample) / 1e6,
        "largest_mflops": largest / 1e6, "depths": list(aw.depths), "stage_widths": list(aw.stages),
        "stem_width": aw.stem, "inner_widths": [list(m) for m in aw.inner],
        "epochs": st["epoch"] + (st["step_in_epoch"] / spe if stopped_early else 0.0),
        "search_seconds": round(st["seconds"], 2), "stopped_early": stopped_early,
        "arch_entropy": supernet.entropy()["arch_entropy"], "arch": str(out / "arch.json"),
        "teacher_images_computed": t_train.computed,
    }
    if derivation.moves:
        write_json(out / "derive_moves.json", derivation.moves)
    for key in ("val_distill_loss", "distill_loss", "expected_mflops"):
        if key in last:
            final[key] = last[key]
    final["default"] = -float(final.get("val_distill_loss", final.get("distill_loss", 0.0)))
    write_json(out / "search_final.json", final)
    if reporter is not None:
        reporter.final(final)
    log.info("derived architecture: %.2f MFLOPs (target %.2f, %s tolerance; argmax %.2f MFLOPs, %d repair moves), "
             "depths %s, stage widths %s", derived / 1e6, target / 1e6, "within" if final["within_tolerance"] else "OUTSIDE",
             derivation.argmax_flops / 1e6, len(derivation.moves), aw.depths, aw.stages)
    return SearchResult(sample, description, final, list(st["history"]), str(out), stopped_early)


def _zero_sums() -> dict[str, float]:
    return {"n": 0.0, "n_arch": 0.0, "distill_loss": 0.0, "val_distill_loss": 0.0, "cost_loss": 0.0,
            "above": 0.0, "within": 0.0, "below": 0.0}


def _accumulate(sums: dict[str, float], record: Mapping[str, Any]) -> None:
    sums["n"] += 1
    sums["distill_loss"] += record["distill_loss"]
    if "val_distill_loss" in record:
        sums["n_arch"] += 1
        sums["val_distill_loss"] += record["val_distill_loss"]
        sums["cost_loss"] += record["cost_loss"]
        sums[record["regime"]] += 1


def _epoch_metrics(st: Mapping[str, Any], supernet: TnasSupernet, space: TnasSpace, target: float,
                   tolerance: float) -> dict[str, Any]:
    sums = st["sums"]
    n, na = max(1.0, sums["n"]), sums["n_arch"]
    sample = supernet.argmax_sample()
    with torch.no_grad():
        expected = float(supernet.expected_flops())
    argmax = space.flops(sample)
    m: dict[str, Any] = {
        "epoch": st["epoch"] + 1, "step": st["global_step"],
        "distill_loss": sums["distill_loss"] / n,
        **supernet.entropy(),
        "expected_mflops": expected / 1e6, "argmax_mflops": argmax / 1e6, "target_mflops": target / 1e6,
        "argmax_within_tolerance": float(cost_regime(argmax, target, tolerance) not in (COST_ABOVE, COST_BELOW)),
        "seconds": round(st["seconds"], 2),
    }
    if na:
        m.update(val_distill_loss=sums["val_distill_loss"] / na, cost_loss=sums["cost_loss"] / na,
                 frac_above=sums["above"] / na, frac_within=sums["within"] / na, frac_below=sums["below"] / na)
    m["default"] = -float(m.get("val_distill_loss", m["distill_loss"]))
    m["arch"] = dict(sample)
    return m


__all__ = ["TnasSearchConfig", "SearchResult", "load_search_config", "resolve_target", "run_search", "COST_BELOW"]
