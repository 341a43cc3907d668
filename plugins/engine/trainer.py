"""The face training engine: arcface_torch's ``train_v2.py`` as a reusable, resumable function.

:func:`train` builds (or takes) the data loader, backbone, PartialFC margin head, optimiser and
LR schedule from a :class:`~facenas.plugins.engine.config.TrainConfig`, trains with optional
DDP / AMP / gradient accumulation / clipping, verifies on ``val_targets`` every ``verbose``
steps and every ``val_every_epoch`` epochs, and writes into ``output``:

* ``checkpoint.pt`` (``checkpoint_rank<r>.pt`` under DDP): the full training state, atomically
  replaced at every epoch end, verification and ``checkpoint_every`` steps (``--resume``);
* ``last.pt`` / ``best.pt``: the backbone as ``facenas.model/1`` (best by the first
  ``val_targets`` accuracy); ``model.pt``: the last backbone's bare state dict, as arcface_torch
  writes it;
* ``train_metrics.jsonl``: one JSON line per log step, verification, epoch and the end;
  ``config.json``: the resolved config.

It runs on the shared loop (:class:`facenas.engine.loop.Loop`), which does the checkpoints,
the RNG-exact resume, the time budget, progress, the metrics log and ``final.json``;
:class:`FaceTraining` is the face-training part (data, step, verification, model files).

A search method retraining a found architecture calls ``train(config, model=net,
reporter=reporter)``; the smaller helpers (:func:`build_backbone`, :func:`build_head`,
``build_optimizer`` / ``PolynomialLRWarmup``) serve methods that build their own tasks.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from facenas.adapters.insightface.backbones import get_model, load_state_dict_checked, network_spec, save_backbone
from facenas.adapters.insightface.losses import build_margin_head
from facenas.adapters.insightface.partial_fc import PartialFC
from facenas.engine import distributed as D
from facenas.engine.distributed import resolve_device
from facenas.engine.checkpoint import checkpoint_path, save_rank_state
from facenas.engine.loop import Diverged, Loop, LoopConfig, LoopState, LoopTask
from facenas.engine.loop import TrainingDivergedError  # noqa: F401 - engine.train's divergence error, re-exported
from facenas.engine.optim import PolynomialLRWarmup, build_optimizer, param_groups, schedule_steps
from facenas.errors import ConfigError
from facenas.nas.report import Reporter
from facenas.nas.results import CONFIG as CONFIG_FILE
from facenas.utils.io import atomic_torch_save, write_json
from facenas.utils.lock import output_lock
from facenas.utils.paths import shared_data_dir
from facenas.utils.seed import seed_everything

from .config import TrainConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        metrics: final metrics (``loss``, ``<set>_acc``..., ``default``; test sets on the last model).
        best: the best verification record ``{"step", "metric", "value"}`` or None.
        output: the output folder.
        global_step: optimiser iterations done.
        epochs: epochs done (fractional if stopped by ``max_minutes``).
        train_seconds: wall time spent in training steps (excluding verification).
        stopped_early: True if ``max_minutes`` ended the run before ``num_epoch``.
        model: the trained backbone (unwrapped from DDP), in eval mode.
        rank: this process's rank (only rank 0 verifies and writes the model files).
    """

    metrics: dict[str, Any]
    best: dict[str, Any] | None
    output: str
    global_step: int
    epochs: float
    train_seconds: float
    stopped_early: bool
    model: nn.Module = dataclasses.field(repr=False)
    rank: int = 0


#: the network_kwargs an architecture description (a ``.json`` network) is rebuilt with (``get_model``)
DESCRIPTION_KWARGS = ("space_config", "input_size")


# -- helpers the search methods use -----------------------------------------------------------
def build_backbone(cfg: TrainConfig, bridge: Any | None = None) -> nn.Module:
    """The config's backbone (facenas registry, a description, or the user's arcface_torch)."""
    kwargs: dict[str, Any] = {"num_features": cfg.embedding_size, "fp16": cfg.fp16, "dropout": 0.0}
    if bridge is not None and bridge.uses("backbones"):
        if cfg.network_kwargs:
            raise ConfigError(f"network_kwargs {cfg.network_kwargs} cannot be passed to arcface_torch's get_model")
        return bridge.get_model(cfg.network, **kwargs)
    if cfg.network_kwargs and not str(cfg.network).endswith(".json"):
        kwargs.update(cfg.network_kwargs)
    elif cfg.network_kwargs:  # a description: its space options and input size; a recipe's width_mult is not its
        kwargs.update({k: v for k, v in cfg.network_kwargs.items() if k in DESCRIPTION_KWARGS})
        ignored = sorted(set(cfg.network_kwargs) - set(DESCRIPTION_KWARGS))
        if ignored:
            log.warning("network_kwargs %s ignored for the architecture description %s (it takes %s)", ignored,
                        cfg.network, list(DESCRIPTION_KWARGS))
    if cfg.image_size is not None and "input_size" not in kwargs:
        kwargs["input_size"] = cfg.image_size  # a description is rebuilt at that size when it was searched at another
    return get_model(cfg.network, **kwargs)


def build_head(cfg: TrainConfig, num_classes: int | None = None, bridge: Any | None = None) -> nn.Module:
    """PartialFC with the config's margin head (``margin_head``, ``margin_list``, ``margin_scale``)."""
    n = int(num_classes or cfg.num_classes)
    if bridge is not None and bridge.uses("losses"):
        if cfg.margin_head != "combined":
            raise ConfigError(f"arcface_torch has no '{cfg.margin_head}' head; use margin_head='combined' with the bridge "
                              "or drop 'losses' from arcface_torch_components")
        margin = bridge.margin_loss(cfg.margin_scale, cfg.margin_list, cfg.interclass_filtering_threshold)
    else:
        margin = build_margin_head(cfg.margin_head, cfg.margin_list, cfg.margin_scale,
                                   cfg.interclass_filtering_threshold, cfg.margin_grad)
    if bridge is not None and bridge.uses("partial_fc"):
        return bridge.partial_fc(margin, cfg.embedding_size, n, cfg.sample_rate, cfg.fp16)
    return PartialFC(margin, cfg.embedding_size, n, cfg.sample_rate, cfg.fp16, seed=cfg.seed,
                     label_smoothing=cfg.label_smoothing)


def resolve_val_targets(names: list[str], rec: str) -> dict[str, str]:
    """``{set name: .bin path}``: a path as given, else ``<rec>/<name>.bin``, else the shared data folder."""
    out: dict[str, str] = {}
    for name in names:
        candidates = [Path(name)] if name.endswith(".bin") else []
        if rec and rec != "synthetic":
            candidates.append(Path(rec) / f"{name}.bin")
        candidates.append(shared_data_dir() / f"{name}.bin")
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ConfigError(f"val/test target '{name}' not found; looked at {[str(c) for c in candidates]}")
        out[Path(found).stem] = str(found)
    return out


def data_num_classes(loader: Any, rec: str) -> int | None:
    """Number of identities the data holds, when the dataset or InsightFace's ``property`` file says."""
    dataset = getattr(loader, "dataset", None)
    for attr in ("num_classes",):
        value = getattr(dataset, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    classes = getattr(dataset, "classes", None)
    if isinstance(classes, (list, tuple)) and classes:
        return len(classes)
    prop = Path(rec) / "property" if rec and rec != "synthetic" else None
    if prop is not None and prop.is_file():
        try:
            return int(prop.read_text().split(",")[0])
        except ValueError:
            return None
    return None


def _make_loader(cfg: TrainConfig, dist_info: D.DistInfo) -> Any:
    from facenas.adapters.insightface.dataset import get_dataloader

    return get_dataloader(cfg.rec, dist_info.local_rank, cfg.batch_size, dali=cfg.dali, seed=cfg.seed,
                          num_workers=cfg.num_workers, image_size=cfg.image_size)


def _make_evaluator(bins: Mapping[str, str], cfg: TrainConfig) -> Callable[[nn.Module], dict[str, float]] | None:
    if not bins:
        return None
    from facenas.adapters.insightface.evaluate import VerificationEvaluator

    return VerificationEvaluator(dict(bins), batch_size=cfg.val_batch_size, flip=True, image_size=cfg.image_size)


# -- engine.train on the shared loop ---------------------------------------------------------
#: The model files a training run writes besides the loop's own (``--overwrite`` deletes them too).
MODEL_FILES = ("last.pt", "best.pt", "model.pt")

#: Config fields a resumed run must keep: they decide the data order, the batch and the shapes the
#: optimiser state belongs to. Anything else may change -- ``num_epoch`` to train longer, ``lr``,
#: ``warmup_epoch`` or the margin head after a divergence (its message says so); a changed network
#: is caught by its weights, naming the keys that do not fit.
RESUME_MUST_MATCH = ("batch_size", "embedding_size", "gradient_acc", "image_size", "num_classes", "num_image",
                     "optimizer", "sample_rate", "seed")

DIVERGED_FIX = ("lower lr (now {lr}) or add warm-up (warmup_epoch), or use the Li-ArcFace head (margin_head='li_arcface', "
                "margin_list=(1.0, 0.45, 0.0)), which converges where ArcFace diverges for small embeddings; then "
                "train again or resume with the new settings")


class FaceTraining(LoopTask):
    """engine.train's part of the shared loop: one PartialFC margin-softmax step, verification, model files.

    :class:`~facenas.engine.loop.Loop` does checkpoints, resume, the time budget, progress and
    the metrics log; this task supplies the data, the step (AMP, gradient accumulation, clipping,
    DDP) and verification every ``verbose`` steps and every ``val_every_epoch`` epochs, keeping
    ``best.pt`` / ``last.pt`` / ``model.pt`` next to each checkpoint.
    """

    desc = "train"

    def __init__(self, cfg: TrainConfig, dist_info: D.DistInfo, device: torch.device, out: Path, use_amp: bool):
        self.cfg = cfg
        self.dist = dist_info
        self.device = device
        self.out = out
        self.use_amp = use_amp
        self.epochs = cfg.num_epoch
        self.loop: Loop | None = None
        self.best: dict[str, Any] | None = None
        self.last_val: tuple[int, dict[str, float]] | None = None
        self.epoch_losses: list[float] = []  # this epoch's step losses (checkpointed: a resumed epoch's mean is exact)
        self.resumed_buffers: dict[str, torch.Tensor] = {}
        self.resumed = False
        self._begun = False

    # -- set-up -----------------------------------------------------------------------------------
    def setup(self, model: nn.Module | None, train_loader: Any | None,
              evaluator: Callable[[nn.Module], Mapping[str, float]] | None,
              test_evaluator: Callable[[nn.Module], Mapping[str, float]] | None, head: nn.Module | None) -> None:
        """Data, backbone, head, optimiser, schedule and evaluators (after the output folder was claimed)."""
        from facenas.adapters.insightface.arcface_torch_bridge import bridge_from_config

        cfg, dist_info, device = self.cfg, self.dist, self.device
        seed_everything(cfg.seed + dist_info.rank)
        bridge = bridge_from_config(cfg)

        # data first: a wrong num_classes must fail before any training
        loader = train_loader if train_loader is not None else _make_loader(cfg, dist_info)
        found = data_num_classes(loader, cfg.rec)
        num_classes = cfg.num_classes or found
        if not num_classes:
            raise ConfigError(f"num_classes is 0 and the data at {cfg.rec!r} does not say how many identities it "
                              "has; set num_classes")
        if found is not None and num_classes < found:
            raise ConfigError(f"num_classes={num_classes} is smaller than the {found} identities in {cfg.rec!r} "
                              f"(labels up to {found - 1}); set num_classes={found}")
        try:
            loader_len = len(loader)
        except TypeError:
            loader_len = None
        self.loader, self.num_classes = loader, num_classes
        generator = getattr(loader, "generator", None)
        self.data_generator = generator if isinstance(generator, torch.Generator) else None
        self.images_per_step = cfg.batch_size * dist_info.world_size
        self.steps_per_epoch, self.warmup_steps, self.steps = schedule_steps(
            cfg.num_image, self.images_per_step, cfg.num_epoch, cfg.warmup_epoch, loader_len)

        self.backbone = model if model is not None else build_backbone(cfg, bridge)
        self.backbone.to(device)
        self.head = head if head is not None else build_head(cfg, num_classes, bridge)
        self.head.to(device)
        self.optimizer = build_optimizer(cfg.optimizer, param_groups(self.backbone, self.head), cfg.lr,
                                         cfg.weight_decay, cfg.momentum)
        self.scheduler = PolynomialLRWarmup(self.optimizer, self.warmup_steps, self.steps, cfg.lr_power)
        self.scaler = torch.amp.GradScaler("cuda", growth_interval=100, enabled=self.use_amp)
        try:
            self.spec = network_spec(self.backbone)
        except ConfigError:
            self.spec = None
            log.warning("the backbone was not built by get_model/build_from_description; best.pt/last.pt will hold "
                        "its state dict with no way to rebuild it (pass a model built by get_model or a space)")
        self.ddp_model: nn.Module = self.backbone

        # every rank takes part in verification's barriers, so the decision must not depend on the rank
        self.has_val = evaluator is not None or bool(cfg.val_targets)
        bins = resolve_val_targets(cfg.val_targets, cfg.rec) if dist_info.is_main else {}
        def evaluator_for(sets: Mapping[str, str]) -> Callable[[nn.Module], Mapping[str, float]] | None:
            uses_bridge = bridge is not None and bridge.uses("verification")
            return bridge.evaluator(sets, cfg) if uses_bridge else _make_evaluator(sets, cfg)

        if evaluator is None and dist_info.is_main:
            evaluator = evaluator_for(bins)
        if test_evaluator is None and dist_info.is_main and cfg.test_targets:
            test_evaluator = evaluator_for(resolve_val_targets(cfg.test_targets, cfg.rec))
        self.evaluator, self.test_evaluator = evaluator, test_evaluator

    def _begin(self, state: LoopState) -> None:
        """Once, when training (or the final evaluation) starts: config.json, DDP, the model files of a resume."""
        if self._begun:
            return
        self._begun = True
        cfg, dist_info = self.cfg, self.dist
        if dist_info.is_main:
            write_json(self.out / CONFIG_FILE, {**cfg.to_dict(), "num_classes": self.num_classes,
                                                "world_size": dist_info.world_size,
                                                "steps_per_epoch": self.steps_per_epoch, "total_steps": self.steps,
                                                "warmup_steps": self.warmup_steps})
        if dist_info.distributed:
            # as arcface_torch: BN buffers stay per-rank (no sync at every forward)
            no_sync = ({"forward_sync_buffers": False}
                       if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
                       else {"broadcast_buffers": False})
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.backbone, device_ids=[dist_info.local_rank] if self.device.type == "cuda" else None,
                bucket_cap_mb=16, **no_sync)
            D.restore_buffers(self.backbone, self.resumed_buffers)
        if self.resumed:
            self._write_model_files(state, "resume")  # last.pt / model.pt at checkpoint.pt's step (after_checkpoint)
        self.backbone.train()
        self.head.train()

    # -- the loop's hooks ---------------------------------------------------------------------------
    def total_steps(self) -> int:
        return self.steps

    def done(self, state: LoopState) -> bool:
        return state.global_step >= self.steps

    def start_epoch(self, state: LoopState) -> None:
        self._begin(state)
        if state.step_in_epoch == 0:  # not an epoch resumed part-way
            self.epoch_losses = []
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(state.epoch)

    def batches(self, state: LoopState) -> Any:
        return self.loader

    def step(self, batch: Any, state: LoopState) -> dict[str, Any]:
        cfg, optimizer, scaler = self.cfg, self.optimizer, self.scaler
        step = state.global_step + 1
        images, labels = batch
        _check_labels(labels, self.num_classes, step)
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        with torch.autocast("cuda", enabled=self.use_amp) if self.use_amp else contextlib.nullcontext():
            embeddings = self.ddp_model(images)
        loss = self.head(embeddings.float(), labels)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise self._diverged("loss", loss_value)
        scaler.scale(loss).backward()
        if step % cfg.gradient_acc == 0:
            scaler.unscale_(optimizer)
            if cfg.clip_grad_norm > 0:
                norm = torch.nn.utils.clip_grad_norm_(self.backbone.parameters(), cfg.clip_grad_norm)
                if not self.use_amp and not math.isfinite(float(norm)):
                    raise self._diverged("gradient norm", float(norm))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # stepped every iteration, also between accumulated steps
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            self.scheduler.step()
        self.epoch_losses.append(loss_value)
        return {"loss": loss_value, "lr": optimizer.param_groups[0]["lr"]}

    def _diverged(self, what: str, value: float) -> Diverged:
        return Diverged(what, value, DIVERGED_FIX.format(lr=self.cfg.lr), lr=self.optimizer.param_groups[0]["lr"])

    def after_step(self, state: LoopState, record: Mapping[str, Any]) -> str | None:
        if state.global_step % self.cfg.verbose == 0:
            self.verify(state, f"step {state.global_step}")
            return "verification"
        return None

    def can_checkpoint(self, state: LoopState) -> bool:
        return state.global_step % self.cfg.gradient_acc == 0  # not between accumulated gradients

    def end_epoch(self, state: LoopState) -> dict[str, Any]:
        cfg = self.cfg
        metrics: dict[str, Any] = {"loss": self._epoch_loss()}
        if not state.stopped_early and cfg.val_every_epoch and state.epoch % cfg.val_every_epoch == 0 \
                and state.global_step % cfg.verbose != 0:
            metrics.update(self.verify(state, f"epoch {state.epoch}"))
        return _with_default(metrics, cfg.select_metric)

    def after_checkpoint(self, state: LoopState, reason: str) -> None:
        # checkpoint.pt first, then last.pt / model.pt derived from the same weights: a kill between
        # leaves last.pt one checkpoint behind, and the next --resume rewrites it from checkpoint.pt
        self._write_model_files(state, reason)
        if self.cfg.save_all_states and reason == "epoch":
            suffix = "" if self.dist.world_size == 1 else f"_rank{self.dist.rank}"
            save_rank_state(self.loop.state_record(), self.out / f"epoch_{state.epoch}{suffix}.pt", keep_previous=False)

    def state_dict(self) -> dict[str, Any]:
        return {"network": self.spec, "backbone": self.backbone.state_dict(), "head": self.head.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "best": self.best, "epoch_losses": list(self.epoch_losses)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        where = str(checkpoint_path(self.out, self.dist.rank, self.dist.world_size))
        load_state_dict_checked(self.backbone, state["backbone"], where)
        buffers = dict(self.backbone.named_buffers())
        self.resumed_buffers = {k: v for k, v in state["backbone"].items() if k in buffers}
        load_state_dict_checked(self.head, state["head"], f"{where} (head)",
                                hint="the margin head / num_classes / embedding_size differ from the run being resumed")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.best = state.get("best")
        self.epoch_losses = [float(v) for v in state.get("epoch_losses", [])]
        self.resumed = True

    def final(self, state: LoopState) -> dict[str, Any]:
        self._begin(state)
        cfg, backbone = self.cfg, self.backbone
        final: dict[str, Any] = {"loss": self._epoch_loss(),
                                 "epochs": state.epoch + (state.step_in_epoch / self.steps_per_epoch
                                                          if state.stopped_early else 0.0)}
        if self.has_val:
            final.update(self.last_val[1] if self.last_val and self.last_val[0] == state.global_step
                         else self.verify(state, "final"))
        if self.test_evaluator is not None and self.dist.is_main:
            backbone.eval()
            with torch.no_grad():
                tested = {k: float(v) for k, v in self.test_evaluator(backbone).items()}
            backbone.train()
            final.update(tested)
            self.loop.log_json({"type": "test", "step": state.global_step, "model": "last", **tested})
            if self.best is not None and self.best["step"] != state.global_step and (self.out / "best.pt").is_file():
                from facenas.adapters.insightface.backbones import load_backbone

                best_model = load_backbone(self.out / "best.pt").to(self.device)
                with torch.no_grad():
                    best_tested = {f"best_{k}": float(v) for k, v in self.test_evaluator(best_model).items()}
                final.update(best_tested)
                self.loop.log_json({"type": "test", "step": self.best["step"], "model": "best", **best_tested})
        if self.best is not None:
            final["best_step"] = self.best["step"]
            final[f"best_{self.best['metric']}"] = self.best["value"]
        return _with_default(final, cfg.select_metric)

    # -- verification and model files ---------------------------------------------------------------
    def _epoch_loss(self) -> float:
        return sum(self.epoch_losses) / max(1, len(self.epoch_losses))

    def verify(self, state: LoopState, tag: str) -> dict[str, float]:
        if not self.has_val:
            return {}
        cfg, backbone = self.cfg, self.backbone
        metrics: dict[str, float] = {}
        self.last_val = (state.global_step, metrics)
        if self.dist.is_main and self.evaluator is not None:
            t0 = time.monotonic()
            backbone.eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in self.evaluator(backbone).items()}
            backbone.train()
            key = _selection_metric(metrics, cfg.select_metric)
            log.info("verification at step %d (%s, %.1fs): %s", state.global_step, tag, time.monotonic() - t0,
                     {k: round(v, 4) for k, v in metrics.items()})
            self.last_val = (state.global_step, metrics)
            self.loop.log_json({"type": "val", "step": state.global_step, "epoch": state.epoch, "tag": tag, **metrics})
            if key is not None and (self.best is None or metrics[key] > self.best["value"]):
                self.best = {"step": state.global_step, "epoch": state.epoch, "metric": key, "value": metrics[key]}
                log.info("new best %s %.4f at step %d (select_metric=%s)", key, metrics[key], state.global_step,
                         cfg.select_metric)
                if self.spec is not None:
                    save_backbone(backbone, self.out / "best.pt", network=self.spec, embedding_size=cfg.embedding_size,
                                  meta={"global_step": state.global_step, key: metrics[key], "config": cfg.to_dict()})
        D.barrier(self.dist)
        return metrics

    def _write_model_files(self, state: LoopState, reason: str) -> None:
        if self.dist.is_main and self.spec is not None:
            cfg = self.cfg
            meta = {"global_step": state.global_step, "epoch": state.epoch, "reason": reason, "config": cfg.to_dict()}
            save_backbone(self.backbone, self.out / "last.pt", meta=meta, network=self.spec,
                          embedding_size=cfg.embedding_size)
            atomic_torch_save({k: v.detach().cpu() for k, v in self.backbone.state_dict().items()},
                              self.out / "model.pt")


def train(config: TrainConfig, model: nn.Module | None = None, reporter: Reporter | None = None,
          train_loader: Any | None = None, evaluator: Callable[[nn.Module], Mapping[str, float]] | None = None,
          test_evaluator: Callable[[nn.Module], Mapping[str, float]] | None = None,
          head: nn.Module | None = None, on_step: Callable[[dict[str, Any]], None] | None = None,
          report_final: bool = True) -> TrainResult:
    """Train a backbone with a margin-softmax head; see the module docstring for the outputs.

    Args:
        config: the validated training config (``config.output`` is the output folder).
        model: a backbone to train instead of ``config.network`` (e.g. a searched network; built
            by ``get_model`` or a space, so checkpoints can rebuild it).
        reporter: receives one intermediate metric dict per epoch and the final one.
        train_loader: a loader of ``(images, labels)`` instead of ``get_dataloader(config.rec...)``.
        evaluator: ``model -> metrics`` instead of a ``VerificationEvaluator`` on ``val_targets``.
        test_evaluator: ``model -> metrics`` run once at the end instead of ``test_targets``'.
        head: a PartialFC-like ``(embeddings, labels) -> loss`` module instead of :func:`build_head`.
        on_step: called after every optimiser iteration with ``{"step", "epoch", "loss", "lr"}``
            (tests use it to interrupt a run).
        report_final: send the final metrics to ``reporter`` (a stage adding its own sends them itself).
    """
    cfg = config
    cfg.validate("train config")
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    use_amp = cfg.fp16 and device.type == "cuda"
    if cfg.fp16 and not use_amp:
        log.warning("fp16=True needs CUDA; training in float32 on %s", device)
    dist_info = D.init_distributed(device)
    out = Path(cfg.output or cfg.resolved_output())
    try:
        with output_lock(out, "facenas train", enabled=dist_info.is_main):  # one run per folder
            task = FaceTraining(cfg, dist_info, device, out, use_amp)
            loop = Loop(task, LoopConfig(output=str(out), resume=cfg.resume, overwrite=cfg.overwrite,
                                         checkpoint_every=cfg.checkpoint_every, max_minutes=cfg.max_minutes,
                                         log_every=cfg.frequent, progress_interval=10.0,
                                         must_match=RESUME_MUST_MATCH),
                        settings=cfg.to_dict(), reporter=reporter, on_step=on_step, dist_info=dist_info,
                        run_files=MODEL_FILES, report_final=report_final)
            task.loop = loop
            loop.claim_output()  # refuse a used folder before the set-up's work
            task.setup(model, train_loader, evaluator, test_evaluator, head)
            final = loop.run()
            task.backbone.eval()
            st = loop.state
            return TrainResult(final, task.best, str(out), st.global_step, float(final.get("epochs", st.epoch)),
                               st.train_seconds, bool(final.get("stopped_early", False)), task.backbone,
                               dist_info.rank)
    except Exception as exc:
        if D.is_peer_failure(exc, dist_info):
            raise D.peer_lost(exc, dist_info, out) from None
        raise
    finally:
        D.shutdown(dist_info)


def _check_labels(labels: torch.Tensor, num_classes: int, step: int) -> None:
    if labels.numel() and labels.device.type == "cpu":
        top, low = int(labels.max()), int(labels.min())
        if top >= num_classes or low < 0:
            raise ConfigError(f"a batch at step {step} has label {top if top >= num_classes else low}, "
                              f"outside [0, num_classes={num_classes}); set num_classes to the number of identities")


def _primary_metric(metrics: Mapping[str, float]) -> str | None:
    accs = [k for k in metrics if k.endswith("_acc")]
    return accs[0] if accs else None


def _selection_metric(metrics: Mapping[str, float], select: str) -> str | None:
    """The metric that keeps ``best.pt``: the first set's ``<set>_<select>`` (``acc`` or ``auc``).

    Fold accuracy is only meaningful when every fold holds both classes; on a sorted ``.bin``
    (``lfw_devtest``: 500 same then 500 different pairs) each fold is class-pure and the mean
    fold accuracy can fall below chance for a network that verifies well. The AUC is threshold-free
    and, on such a set, computed over all pairs pooled (``verification.evaluate``).
    """
    if not metrics:
        return None
    keys = [k for k in metrics if k.endswith(f"_{select}")]
    if not keys:
        raise ConfigError(f"select_metric={select!r}: the verification reported no '<set>_{select}' metric "
                          f"(it reported {sorted(metrics)}); set select_metric to one it reports")
    return keys[0]


def _with_default(metrics: Mapping[str, Any], select: str = "acc") -> dict[str, Any]:
    """``metrics`` plus ``default`` (what a pipeline ranks): the first set's ``<set>_<select>`` -- the
    measure that keeps ``best.pt``, so a class-pure validation set ranks by AUC -- else its first
    accuracy, else minus the loss."""
    out = dict(metrics)
    if "default" not in out:
        numbers = {k: v for k, v in out.items() if isinstance(v, (int, float)) and not k.startswith("best_")}
        key = next((k for k in numbers if k.endswith(f"_{select}")), None) or _primary_metric(numbers)
        out["default"] = float(out[key]) if key else -float(out.get("loss", 0.0))
    return out

