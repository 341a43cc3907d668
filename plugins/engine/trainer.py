"""The training loop: arcface_torch's ``train_v2.py`` as a reusable, resumable function.

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

A search method retraining a found architecture calls ``train(config, model=net,
reporter=reporter)``; the smaller helpers (:func:`build_head`, :func:`build_training_parts`,
``build_optimizer`` / ``PolynomialLRWarmup``) serve methods that run their own loops.
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
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from facenas.adapters.insightface.backbones import get_model, load_state_dict_checked, network_spec, save_backbone
from facenas.adapters.insightface.losses import build_margin_head
from facenas.adapters.insightface.partial_fc import PartialFC
from facenas.errors import ConfigError, FacenasError, OutputFolderError
from facenas.nas.report import Reporter
from facenas.utils.io import append_jsonl, atomic_write, read_json, write_json
from facenas.utils.lock import output_lock
from facenas.utils.paths import shared_data_dir
from facenas.utils.progress import Progress
from facenas.utils.seed import seed_everything

from facenas.engine import distributed as D
from facenas.engine.checkpoint import (agreed_checkpoint, capture_rng, checkpoint_path, load_train_state, restore_rng,
                         save_train_state)
from .config import TrainConfig
from facenas.engine.optim import PolynomialLRWarmup, build_optimizer, param_groups, schedule_steps

log = logging.getLogger(__name__)


class TrainingDivergedError(FacenasError):
    """The loss (or gradient norm) became NaN / inf; the run stopped before updating the weights."""


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


# -- helpers the search methods use -----------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'")
    return torch.device(name)


def build_backbone(cfg: TrainConfig, bridge: Any | None = None) -> nn.Module:
    """The config's backbone (facenas registry, a description, or the user's arcface_torch)."""
    kwargs: dict[str, Any] = {"num_features": cfg.embedding_size, "fp16": cfg.fp16, "dropout": 0.0}
    if bridge is not None and bridge.uses("backbones"):
        if cfg.network_kwargs:
            raise ConfigError(f"network_kwargs {cfg.network_kwargs} cannot be passed to arcface_torch's get_model")
        return bridge.get_model(cfg.network, **kwargs)
    if cfg.network_kwargs and not str(cfg.network).endswith(".json"):
        kwargs.update(cfg.network_kwargs)
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


# -- the loop ---------------------------------------------------------------------------------
class _Run:
    """State of one training run (kept in one place so checkpoints capture all of it)."""

    def __init__(self, cfg: TrainConfig, dist_info: D.DistInfo, device: torch.device, out: Path):
        self.cfg = cfg
        self.dist = dist_info
        self.device = device
        self.out = out
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.train_seconds = 0.0
        self.best: dict[str, Any] | None = None
        self.last_metrics: dict[str, Any] = {}
        self.epoch_rng: dict[str, Any] | None = None
        self.last_good_checkpoint: str | None = None
        self.last_good_step: int | None = None
        self.last_val: tuple[int, dict[str, float]] | None = None

    def log_json(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            append_jsonl(self.out / "train_metrics.jsonl", {"time": round(time.time(), 3), **record})


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
            return _train(cfg, dist_info, device, out, use_amp, model, reporter, train_loader, evaluator,
                          test_evaluator, head, on_step, report_final)
    except Exception as exc:
        if D.is_peer_failure(exc, dist_info):
            raise D.peer_lost(exc, dist_info, out) from None
        raise
    finally:
        D.shutdown(dist_info)


def _train(cfg: TrainConfig, dist_info: D.DistInfo, device: torch.device, out: Path, use_amp: bool,
           model: nn.Module | None, reporter: Reporter | None, train_loader: Any | None,
           evaluator: Callable[[nn.Module], Mapping[str, float]] | None,
           test_evaluator: Callable[[nn.Module], Mapping[str, float]] | None, head: nn.Module | None,
           on_step: Callable[[dict[str, Any]], None] | None, report_final: bool) -> TrainResult:
    from facenas.adapters.insightface.arcface_torch_bridge import bridge_from_config

    out.mkdir(parents=True, exist_ok=True)
    _claim_output(cfg, out, dist_info)
    run = _Run(cfg, dist_info, device, out)
    seed_everything(cfg.seed + dist_info.rank)
    bridge = bridge_from_config(cfg)

    # data first: a wrong num_classes must fail before any training
    loader = train_loader if train_loader is not None else _make_loader(cfg, dist_info)
    found = data_num_classes(loader, cfg.rec)
    num_classes = cfg.num_classes or found
    if not num_classes:
        raise ConfigError(f"num_classes is 0 and the data at {cfg.rec!r} does not say how many identities it has; "
                          "set num_classes")
    if found is not None and num_classes < found:
        raise ConfigError(f"num_classes={num_classes} is smaller than the {found} identities in {cfg.rec!r} "
                          f"(labels up to {found - 1}); set num_classes={found}")
    try:
        loader_len = len(loader)
    except TypeError:
        loader_len = None
    total_batch = cfg.batch_size * dist_info.world_size
    spe, warmup_steps, total_steps = schedule_steps(cfg.num_image, total_batch, cfg.num_epoch, cfg.warmup_epoch,
                                                    loader_len)

    backbone = model if model is not None else build_backbone(cfg, bridge)
    backbone.to(device)
    head = head if head is not None else build_head(cfg, num_classes, bridge)
    head.to(device)
    optimizer = build_optimizer(cfg.optimizer, param_groups(backbone, head), cfg.lr, cfg.weight_decay, cfg.momentum)
    scheduler = PolynomialLRWarmup(optimizer, warmup_steps, total_steps, cfg.lr_power)
    scaler = torch.amp.GradScaler("cuda", growth_interval=100, enabled=use_amp)
    try:
        spec = network_spec(backbone)
    except ConfigError:
        spec = None
        log.warning("the backbone was not built by get_model/build_from_description; best.pt/last.pt will hold "
                    "its state dict with no way to rebuild it (pass a model built by get_model or a space)")
    ckpt_file = checkpoint_path(out, dist_info.rank, dist_info.world_size)
    resumed_buffers: dict[str, torch.Tensor] = {}

    if cfg.resume:
        state = load_train_state(agreed_checkpoint(ckpt_file, dist_info))
        if state.get("world_size", 1) != dist_info.world_size:
            raise ConfigError(f"{ckpt_file} was written by {state.get('world_size')} process(es); resume with the same "
                              f"number (now {dist_info.world_size})")
        load_state_dict_checked(backbone, state["backbone"], str(ckpt_file))
        resumed_buffers = {k: v for k, v in state["backbone"].items() if k in dict(backbone.named_buffers())}
        load_state_dict_checked(head, state["head"], f"{ckpt_file} (head)",
                                hint="the margin head / num_classes / embedding_size differ from the run being resumed")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        run.epoch, run.step_in_epoch, run.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        run.train_seconds = float(state["train_seconds"])
        run.best = state.get("best")
        run.epoch_rng = state["epoch_rng"]
        run.last_good_checkpoint, run.last_good_step = str(ckpt_file), run.global_step
        resume_rng = state["rng"]
        log.info("resumed from %s at step %d (epoch %d, batch %d)", ckpt_file, run.global_step, run.epoch,
                 run.step_in_epoch)
        if run.epoch >= cfg.num_epoch or run.global_step >= total_steps:  # nothing left to train
            finished = _finished_result(out, run)
            if finished is not None:
                log.info("the run in %s had already finished at step %d; reporting its final.json", out,
                         run.global_step)
                if reporter is not None and dist_info.is_main and report_final:
                    reporter.final(finished)
                backbone.eval()
                return TrainResult(finished, run.best, str(out), run.global_step, float(finished.get("epochs", run.epoch)),
                                   run.train_seconds, False, backbone, dist_info.rank)
        if dist_info.is_main:
            _truncate_metrics(out / "train_metrics.jsonl", run.global_step)
    else:
        resume_rng = None

    if dist_info.is_main:
        write_json(out / "config.json", {**cfg.to_dict(), "num_classes": num_classes, "world_size": dist_info.world_size,
                                         "steps_per_epoch": spe, "total_steps": total_steps,
                                         "warmup_steps": warmup_steps})
    ddp_model: nn.Module = backbone
    if dist_info.distributed:
        # as arcface_torch: BN buffers stay per-rank (no sync at every forward)
        no_sync = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})
        ddp_model = nn.parallel.DistributedDataParallel(
            backbone, device_ids=[dist_info.local_rank] if device.type == "cuda" else None, bucket_cap_mb=16,
            **no_sync)
        D.restore_buffers(backbone, resumed_buffers)

    # every rank takes part in verification's barriers, so the decision must not depend on the rank
    has_val = evaluator is not None or bool(cfg.val_targets)
    bins = resolve_val_targets(cfg.val_targets, cfg.rec) if dist_info.is_main else {}
    if evaluator is None and dist_info.is_main:
        evaluator = _make_evaluator(bins, cfg) if bridge is None or not bridge.uses("verification") \
            else bridge.evaluator(bins, cfg)
    if test_evaluator is None and dist_info.is_main and cfg.test_targets:
        test_bins = resolve_val_targets(cfg.test_targets, cfg.rec)
        test_evaluator = _make_evaluator(test_bins, cfg) if bridge is None or not bridge.uses("verification") \
            else bridge.evaluator(test_bins, cfg)

    def state_record() -> dict[str, Any]:
        return {
            "network": spec, "backbone": backbone.state_dict(), "head": head.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "epoch": run.epoch, "step_in_epoch": run.step_in_epoch, "global_step": run.global_step,
            "rng": {**capture_rng(), "loader": _loader_generator_state(loader)}, "epoch_rng": run.epoch_rng,
            "best": run.best, "train_seconds": run.train_seconds, "world_size": dist_info.world_size, "rank": dist_info.rank, "config": cfg.to_dict(),
        }

    def checkpoint(reason: str) -> None:
        if run.global_step % cfg.gradient_acc != 0:
            log.debug("checkpoint skipped at step %d: gradients are being accumulated", run.global_step)
            return
        # checkpoint.pt first, then last.pt / model.pt derived from the same weights: a kill between
        # leaves last.pt one checkpoint behind, and the next --resume rewrites it from checkpoint.pt
        save_train_state(ckpt_file, state_record(), keep_previous=dist_info.distributed)
        run.last_good_checkpoint, run.last_good_step = str(ckpt_file), run.global_step
        write_model_files(reason)
        D.barrier(dist_info)

    def write_model_files(reason: str) -> None:
        if dist_info.is_main and spec is not None:
            meta = {"global_step": run.global_step, "epoch": run.epoch, "reason": reason, "config": cfg.to_dict()}
            save_backbone(backbone, out / "last.pt", meta=meta, network=spec, embedding_size=cfg.embedding_size)
            from facenas.utils.io import atomic_torch_save

            atomic_torch_save({k: v.detach().cpu() for k, v in backbone.state_dict().items()}, out / "model.pt")

    def verify(tag: str) -> dict[str, float]:
        if not has_val:
            return {}
        metrics: dict[str, float] = {}
        run.last_val = (run.global_step, metrics)
        if dist_info.is_main and evaluator is not None:
            t0 = time.monotonic()
            backbone.eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in evaluator(backbone).items()}
            backbone.train()
            key = _selection_metric(metrics, cfg.select_metric)
            log.info("verification at step %d (%s, %.1fs): %s", run.global_step, tag, time.monotonic() - t0,
                     {k: round(v, 4) for k, v in metrics.items()})
            run.last_val = (run.global_step, metrics)
            run.log_json({"type": "val", "step": run.global_step, "epoch": run.epoch, "tag": tag, **metrics})
            if key is not None and (run.best is None or metrics[key] > run.best["value"]):
                run.best = {"step": run.global_step, "epoch": run.epoch, "metric": key, "value": metrics[key]}
                log.info("new best %s %.4f at step %d (select_metric=%s)", key, metrics[key], run.global_step,
                         cfg.select_metric)
                if spec is not None:
                    save_backbone(backbone, out / "best.pt", network=spec, embedding_size=cfg.embedding_size,
                                  meta={"global_step": run.global_step, key: metrics[key], "config": cfg.to_dict()})
        D.barrier(dist_info)
        return metrics

    if cfg.resume:
        write_model_files("resume")  # last.pt / model.pt at checkpoint.pt's step (see checkpoint())
    backbone.train()
    head.train()
    sampler = getattr(loader, "sampler", None)
    progress_log = logging.getLogger("facenas.progress" if dist_info.is_main else f"facenas.progress.rank{dist_info.rank}")
    if not dist_info.is_main:
        progress_log.setLevel(logging.WARNING)  # one progress line per step count, from rank 0
    progress = Progress(total_steps, "train", unit="step", interval=10.0, start=run.global_step, logger=progress_log)
    loss_sum, loss_n = 0.0, 0
    stopped_early = False
    t_start = time.monotonic()
    epoch_losses: list[float] = []
    if cfg.resume and (run.epoch >= cfg.num_epoch or run.global_step >= total_steps):
        # killed after its last checkpoint but before final.json: the loss is the last epoch's
        epoch_losses = _last_epoch_loss(out / "train_metrics.jsonl")

    while run.epoch < cfg.num_epoch and not stopped_early:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(run.epoch)
        iterator = _epoch_iterator(loader, run, resume_rng)
        resume_rng = None
        epoch_losses = []
        t_last = time.monotonic()  # training time includes data loading, not verification/checkpoints
        for images, labels in iterator:
            _check_labels(labels, num_classes, run)
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast("cuda", enabled=use_amp) if use_amp else contextlib.nullcontext():
                embeddings = ddp_model(images)
            loss = head(embeddings.float(), labels)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                _diverged(run, "loss", loss_value, optimizer)
            run.global_step += 1
            run.step_in_epoch += 1
            scaler.scale(loss).backward()
            if run.global_step % cfg.gradient_acc == 0:
                scaler.unscale_(optimizer)
                if cfg.clip_grad_norm > 0:
                    norm = torch.nn.utils.clip_grad_norm_(backbone.parameters(), cfg.clip_grad_norm)
                    if not use_amp and not math.isfinite(float(norm)):
                        run.global_step -= 1
                        run.step_in_epoch -= 1
                        _diverged(run, "gradient norm", float(norm), optimizer)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # stepped every iteration, also between accumulated steps
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                scheduler.step()
            now = time.monotonic()
            run.train_seconds += now - t_last
            t_last = now
            lr = optimizer.param_groups[0]["lr"]
            loss_sum += loss_value
            loss_n += 1
            epoch_losses.append(loss_value)
            progress.update(1, loss=loss_value, lr=lr, epoch=run.epoch)
            if run.global_step % cfg.frequent == 0:
                run.log_json({"type": "train", "step": run.global_step, "epoch": run.epoch, "loss": loss_sum / loss_n,
                              "lr": lr, "steps_per_s": round(progress.rate, 4),
                              "images_per_s": round(progress.rate * total_batch, 2),
                              "train_seconds": round(run.train_seconds, 2)})
                loss_sum, loss_n = 0.0, 0
            if on_step is not None:
                on_step({"step": run.global_step, "epoch": run.epoch, "loss": loss_value, "lr": lr})
            if run.global_step % cfg.verbose == 0:
                verify(f"step {run.global_step}")
                checkpoint("verification")
                t_last = time.monotonic()
            elif cfg.checkpoint_every and run.global_step % cfg.checkpoint_every == 0:
                checkpoint("checkpoint_every")
                t_last = time.monotonic()
            if cfg.max_minutes is not None and run.train_seconds >= cfg.max_minutes * 60:
                log.warning("max_minutes=%s reached at step %d (epoch %d); stopping", cfg.max_minutes,
                            run.global_step, run.epoch)
                stopped_early = True
                break
            if run.global_step >= total_steps:
                break
        del iterator
        if not stopped_early:
            run.epoch += 1
            run.step_in_epoch = 0
            run.epoch_rng = None
        epoch_metrics: dict[str, Any] = {"epoch": run.epoch, "step": run.global_step,
                                         "loss": sum(epoch_losses) / max(1, len(epoch_losses)),
                                         "train_seconds": round(run.train_seconds, 2)}
        if not stopped_early and cfg.val_every_epoch and run.epoch % cfg.val_every_epoch == 0 \
                and run.global_step % cfg.verbose != 0:
            epoch_metrics.update(verify(f"epoch {run.epoch}"))
        checkpoint("epoch" if not stopped_early else "max_minutes")
        if cfg.save_all_states and not stopped_early:
            save_train_state(out / f"epoch_{run.epoch}{'' if dist_info.world_size == 1 else f'_rank{dist_info.rank}'}.pt",
                             state_record())
        run.log_json({"type": "epoch", **epoch_metrics})
        if reporter is not None and dist_info.is_main:
            reporter.intermediate(_with_default(epoch_metrics, cfg.select_metric))
        if run.global_step >= total_steps:
            break
    if dist_info.is_main:
        progress.close()

    final: dict[str, Any] = {"loss": sum(epoch_losses) / max(1, len(epoch_losses)), "global_step": run.global_step,
                             "epochs": run.epoch + (run.step_in_epoch / spe if stopped_early else 0.0),
                             "train_seconds": round(run.train_seconds, 2),
                             "wall_seconds": round(time.monotonic() - t_start, 2)}
    if has_val:
        final.update(run.last_val[1] if run.last_val and run.last_val[0] == run.global_step else verify("final"))
    if test_evaluator is not None and dist_info.is_main:
        backbone.eval()
        with torch.no_grad():
            tested = {k: float(v) for k, v in test_evaluator(backbone).items()}
        backbone.train()
        final.update(tested)
        run.log_json({"type": "test", "step": run.global_step, "model": "last", **tested})
        if run.best is not None and run.best["step"] != run.global_step and (out / "best.pt").is_file():
            from facenas.adapters.insightface.backbones import load_backbone

            best_model = load_backbone(out / "best.pt").to(device)
            with torch.no_grad():
                best_tested = {f"best_{k}": float(v) for k, v in test_evaluator(best_model).items()}
            final.update(best_tested)
            run.log_json({"type": "test", "step": run.best["step"], "model": "best", **best_tested})
    if run.best is not None:
        final["best_step"] = run.best["step"]
        final[f"best_{run.best['metric']}"] = run.best["value"]
    final = _with_default(final, cfg.select_metric)
    run.log_json({"type": "final", **final})
    if dist_info.is_main:
        write_json(out / "final.json", final)
    if reporter is not None and dist_info.is_main and report_final:
        reporter.final(final)
    backbone.eval()
    return TrainResult(final, run.best, str(out), run.global_step, float(final["epochs"]), run.train_seconds,
                       stopped_early, backbone, dist_info.rank)


#: What a training run writes into its output folder (``--overwrite`` deletes these first).
RUN_FILES = ("final.json", "train_metrics.jsonl", "config.json", "last.pt", "best.pt", "model.pt")


def _claim_output(cfg: TrainConfig, out: Path, dist_info: D.DistInfo) -> None:
    """A fresh run refuses a folder holding another run (finished or not) unless ``overwrite``."""
    if cfg.resume:
        return
    previous = sorted({p.name for p in out.glob("checkpoint*.pt")} | {n for n in RUN_FILES if (out / n).exists()})
    if not previous:
        return
    if not cfg.overwrite:
        what = "a finished run" if (out / "final.json").is_file() else "an interrupted run"
        raise OutputFolderError(
            f"output folder {out} already holds {what} ({', '.join(previous)}); continue it with --resume "
            "(resume=True), replace it with --overwrite (overwrite=True), or train into a new --output folder")
    if dist_info.is_main:
        log.warning("overwrite=True: deleting the previous run's %s in %s", ", ".join(previous), out)
        for path in [*out.glob("checkpoint*.pt"), *out.glob("epoch_*.pt"), *(out / n for n in RUN_FILES)]:
            path.unlink(missing_ok=True)


def _finished_result(out: Path, run: _Run) -> dict[str, Any] | None:
    """``final.json`` of a run that finished at the checkpoint's step (None if it is not that run's)."""
    path = out / "final.json"
    if not path.is_file():
        return None
    try:
        final = read_json(path)
    except ValueError:
        return None
    return final if isinstance(final, dict) and final.get("global_step") == run.global_step else None


def _metric_records(path: Path) -> list[dict[str, Any]]:
    import json

    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:  # the line a kill cut short
                continue
    return records


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the records a killed run logged after its checkpoint (and its final one): the resumed run
    logs those steps again, so the log holds each step once."""
    from facenas.utils.io import dumps

    records = _metric_records(path)
    keep = [r for r in records if r.get("type") != "final" and int(r.get("step", r.get("global_step", 0)) or 0) <= step]
    if len(keep) == len(records) and (not path.is_file() or path.read_text(encoding="utf-8").endswith("\n")
                                      or not records):
        return
    with atomic_write(path, "w") as fh:
        fh.writelines(dumps(r) + "\n" for r in keep)
    if len(keep) != len(records):
        log.info("dropped %d record(s) after step %d from %s (logged after the last checkpoint)",
                 len(records) - len(keep), step, path)


def _last_epoch_loss(path: Path) -> list[float]:
    losses = [r["loss"] for r in _metric_records(path) if r.get("type") == "epoch" and "loss" in r]
    return losses[-1:]


def _loader_generator_state(loader: Any) -> torch.Tensor | None:
    generator = getattr(loader, "generator", None)
    return generator.get_state() if isinstance(generator, torch.Generator) else None


def _set_loader_generator_state(loader: Any, state: torch.Tensor | None) -> None:
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator) and state is not None:
        generator.set_state(state)


def _epoch_iterator(loader: Any, run: _Run, resume_rng: dict[str, Any] | None) -> Iterator:
    """A fresh iterator over this epoch's batches, fast-forwarded past those already trained on.

    The torch RNG state (and the loader's generator) when the iterator is created decide worker
    seeds and shuffling; they are stored in the checkpoint (``epoch_rng``) so a resumed run
    re-creates the same iterator, skips the ``step_in_epoch`` batches already trained on, and
    then restores every RNG to its state at the checkpoint.
    """
    if resume_rng is not None and run.epoch_rng is not None and run.step_in_epoch > 0:
        torch.set_rng_state(run.epoch_rng["torch"])
        _set_loader_generator_state(loader, run.epoch_rng.get("loader"))
        iterator = iter(loader)
        for _ in range(run.step_in_epoch):
            next(iterator)
        log.info("skipped %d batches already trained on in epoch %d", run.step_in_epoch, run.epoch)
        restore_rng(resume_rng)
        _set_loader_generator_state(loader, resume_rng.get("loader"))
        return iterator
    if resume_rng is not None:  # checkpoint at an epoch boundary
        restore_rng(resume_rng)
        _set_loader_generator_state(loader, resume_rng.get("loader"))
    run.epoch_rng = {"torch": torch.get_rng_state(), "loader": _loader_generator_state(loader)}
    return iter(loader)


def _check_labels(labels: torch.Tensor, num_classes: int, run: _Run) -> None:
    if labels.numel() and labels.device.type == "cpu":
        top, low = int(labels.max()), int(labels.min())
        if top >= num_classes or low < 0:
            raise ConfigError(f"a batch at step {run.global_step + 1} has label {top if top >= num_classes else low}, "
                              f"outside [0, num_classes={num_classes}); set num_classes to the number of identities")


def _diverged(run: _Run, what: str, value: float, optimizer: torch.optim.Optimizer) -> None:
    step = run.global_step + 1
    lr = optimizer.param_groups[0]["lr"]
    where = (f"the last good checkpoint is {run.last_good_checkpoint} (step {run.last_good_step})"
             if run.last_good_checkpoint else "no checkpoint was written yet")
    run.log_json({"type": "diverged", "step": step, "epoch": run.epoch, "what": what, "value": str(value)})
    raise TrainingDivergedError(
        f"{what} became {value} at step {step} (epoch {run.epoch}, lr {lr:.4g}); training stopped before updating the "
        f"weights and {where}. Fix: lower lr (now {run.cfg.lr}) or add warm-up (warmup_epoch), or use the Li-ArcFace "
        "head (margin_head='li_arcface', margin_list=(1.0, 0.45, 0.0)), which converges where ArcFace diverges for "
        "small embeddings; then train again or resume with the new settings")


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

