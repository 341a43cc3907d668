"""The alternating ENAS search (Zhu 2019, Algorithm 1) and the ranking of its architectures.

The search runs on the shared loop (:mod:`facenas.engine.loop`). Each epoch

1. trains the shared child weights for one pass over the training split (or ``steps_per_epoch``
   minibatches) -- the loop's steps: the controller samples a fresh arc for every minibatch, which
   is trained with cross-entropy (a linear softmax classifier, Eq. 1; a margin head optionally)
   and momentum SGD; the learning rate warms up linearly and then follows the paper's warped
   cosine (Eq. 6);
2. trains the controller for ``controller_steps`` (S) steps -- the loop's epoch end: each step
   draws a minibatch of the held-out *validation* images of the training identities and
   ``arcs_per_step`` (Q) arcs, measures each arc's top-1 identity accuracy on that minibatch with
   the shared weights (batch statistics in BN, as ENAS evaluates its child model) and its latency
   from the lookup table, and updates the controller by REINFORCE with the reward of
   :mod:`.reward`: per arc (``reward_mode="per_arc"``, the default), or -- Algorithm 1 literally
   -- one reward from the Q arcs' mean accuracy and mean latency shared by all of them
   (``"batch_mean"``).

Per-epoch reward, accuracy, latency and policy entropy go to the reporter (NNI's intermediate
results) and to ``train_metrics.jsonl``. The loop checkpoints the whole state (supernet,
classifier, both optimisers, baseline, generators, history) atomically in ``checkpoint.pt`` at
every epoch end and every ``checkpoint_every`` child steps; ``resume=True`` continues from it bit
for bit, also mid-epoch (the epoch's batch order is re-drawn from the data generator's state at
the epoch's start, and the batches already trained on are skipped).

At the end (Algorithm 2's first step; the loop's final) ``candidates`` distinct arcs are sampled
from the trained policy, each is scored on the *whole* validation split with the shared weights,
and they are ranked by validation accuracy; the top ``top_k`` are written as architecture
descriptions (``top{i}_arch.json``; the best also as ``arch.json``) for retraining from scratch
(:mod:`.retrain`), and ``final.json`` holds the typed result (``arch``, ``arch_path``,
``architectures`` best first; :mod:`facenas.nas.results`).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from facenas.config import TypedConfig
from facenas.engine.distributed import check_device, resolve_device
from facenas.engine.loop import Diverged, Loop, LoopConfig, LoopState, LoopTask
from facenas.errors import ConfigError, FacenasError
from facenas.nas.report import Reporter
from facenas.nas.results import ARCH, CHECKPOINT, CONFIG, ranked_result
from facenas.nas.space import create_space
from facenas.utils.io import write_json
from facenas.utils.paths import shared_data_dir
from facenas.utils.progress import Progress
from facenas.utils.seed import torch_generator

from .controller import Controller, ControllerConfig, ReinforceTrainer
from .data import SearchData, load_search_data
from .latency import LatencyModel, build_latency_model
from .model import batch_stat_bn
from .reward import RewardConfig, latency_reward

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SearchConfig(TypedConfig):
    """Configuration of an ENAS search (see the module docstring; defaults: CPU scale).

    Attributes:
        space, space_config: the registered space and its config.
        rec: training data: a RecordIO folder, an image folder, ``"synthetic"``, or the name of a
            folder in the shared data directory (``"celeba299"``).
        image_size: input resolution (default: the space's ``input_size``).
        split, split_seed: train / val / test fractions of every identity's images, and their seed.
        epochs: alternating epochs.
        batch_size: child training minibatch.
        steps_per_epoch: child steps per epoch (0 = one pass over the training split).
        child_lr, child_lr_min, child_warmup_epochs: warm-up to ``child_lr``, then Eq. 6 down to ``child_lr_min``.
        child_momentum, child_weight_decay, child_grad_clip: SGD settings (clip 0 = off).
        child_head: ``"softmax"`` (cross-entropy on a linear classifier, as the paper) or a
            margin head of the engine (``"combined"``, ``"arcface"``, ...) with ``margin_list`` / ``margin_scale``.
        controller: :class:`~facenas.plugins.enas.controller.ControllerConfig` fields.
        controller_steps: S, controller updates per epoch.
        arcs_per_step: Q, arcs evaluated per controller update.
        val_batch_size: validation images per controller step (and per batch when ranking).
        reward: :class:`~facenas.plugins.enas.reward.RewardConfig` fields (``target_ms``, ``exponent``, ...).
        reward_mode: ``"per_arc"`` or ``"batch_mean"`` (see the module docstring).
        latency: ``{"lut": path}`` or ``{"table": {key: ms}}``; None = no latency term.
        candidates: arcs sampled from the final policy and ranked on the validation split.
        top_k: how many of them are kept for retraining.
        seed: seeds the supernet, the controller and the data order.
        threads: torch CPU threads (None = leave as is).
        device: where the shared child weights (supernet and classifier) train and are evaluated:
            ``"cpu"`` (the default), ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available). The
            controller stays on the CPU: an LSTM step per decision on batch 1 is launch-bound on a GPU,
            and its sampling draws from CPU generators, so arcs are the same on any device. A resumed
            search may change it (then the numbers continue on the new device, not bit for bit).
        max_minutes: stop once the child training has taken this long (the loop's training time:
            child steps, not controller epochs or the ranking), then rank the candidates.
        checkpoint_every: also checkpoint every this many child steps (0 = at epoch ends only).
        resume: continue from ``checkpoint.pt`` in the output folder (only ``epochs``,
            ``max_minutes``, ``threads``, ``device``, ``checkpoint_every`` may differ from the checkpoint's settings).
        overwrite: replace a previous search in the output folder (a fresh run refuses one otherwise).
    """

    space: str = "enas"
    space_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    rec: str = "celeba299"
    image_size: int | None = None
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0
    epochs: int = 10
    batch_size: int = 64
    steps_per_epoch: int = 0
    child_lr: float = 0.1
    child_lr_min: float = 1e-4
    child_warmup_epochs: float = 1.0
    child_momentum: float = 0.9
    child_weight_decay: float = 1e-4
    child_grad_clip: float = 5.0
    child_head: str = "softmax"
    margin_list: tuple[float, float, float] = (1.0, 0.5, 0.0)
    margin_scale: float = 64.0
    controller: dict[str, Any] = dataclasses.field(default_factory=dict)
    controller_steps: int = 20
    arcs_per_step: int = 10
    val_batch_size: int = 128
    reward: dict[str, Any] = dataclasses.field(default_factory=dict)
    reward_mode: Literal["per_arc", "batch_mean"] = "per_arc"
    latency: dict[str, Any] | None = None
    candidates: int = 100
    top_k: int = 3
    seed: int = 0
    threads: int | None = 2
    device: str = "cpu"
    max_minutes: float | None = None
    checkpoint_every: int = 0
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("split", "margin_list"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def check(self, source: str) -> None:
        for name in ("epochs", "batch_size", "controller_steps", "arcs_per_step", "val_batch_size", "candidates", "top_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{source}: {name} = {getattr(self, name)} must be >= 1")
        if self.checkpoint_every < 0:
            raise ConfigError(f"{source}: checkpoint_every = {self.checkpoint_every} must be >= 0 (0 = epoch ends only)")
        if self.top_k > self.candidates:
            raise ConfigError(f"{source}: top_k = {self.top_k} cannot exceed candidates = {self.candidates}")
        if self.steps_per_epoch < 0 or self.child_lr <= 0 or self.child_lr_min < 0 or self.child_lr_min > self.child_lr:
            raise ConfigError(f"{source}: need steps_per_epoch >= 0 and 0 <= child_lr_min <= child_lr "
                              f"(got {self.steps_per_epoch}, {self.child_lr_min}, {self.child_lr})")
        if self.reward.get("target_ms") is not None and self.latency is None:
            raise ConfigError(f"{source}: reward.target_ms = {self.reward['target_ms']} needs a latency model: set "
                              "latency = {'lut': PATH} (a table from `facenas lut build --space enas`)")
        ControllerConfig.from_dict(self.controller, source=f"{source} controller")
        check_device(self.device, f"{source}: device")
        RewardConfig.from_dict(self.reward, source=f"{source} reward")

    def resolved_rec(self) -> str:
        if self.rec == "synthetic" or Path(self.rec).exists():
            return self.rec
        shared = shared_data_dir() / self.rec
        if shared.exists():
            return str(shared)
        raise ConfigError(f"rec = {self.rec!r} is neither 'synthetic', an existing folder, nor a folder of the shared "
                          f"data directory {shared_data_dir()}")


def warped_cosine(progress: float) -> float:
    """Zhu 2019 Eq. 6's decay factor: ``(2^((1 + cos(pi p)) / 2 + 1) - 2) / 2``; 1 at p = 0, 0 at p = 1."""
    p = min(max(progress, 0.0), 1.0)
    return (2.0 ** ((1.0 + math.cos(math.pi * p)) / 2.0 + 1.0) - 2.0) / 2.0


def child_lr_at(step: int, total: int, warmup: int, lr_max: float, lr_min: float) -> float:
    """Linear warm-up from ``lr_max / warmup`` to ``lr_max``, then Eq. 6 down to ``lr_min``."""
    if step < warmup:
        return lr_max * (step + 1) / warmup
    span = max(1, total - warmup)
    return lr_min + (lr_max - lr_min) * warped_cosine((step - warmup) / span)


class _SoftmaxHead(nn.Module):
    """Linear classifier trained with cross-entropy (Eq. 1)."""

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.fc(embeddings), labels)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.fc(embeddings)


class _MarginHead(nn.Module):
    """The engine's PartialFC margin head; classification by cosine to the class centres."""

    def __init__(self, partial_fc: nn.Module):
        super().__init__()
        self.partial_fc = partial_fc

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.partial_fc(embeddings, labels)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(embeddings) @ F.normalize(self.partial_fc.weight).t()


def _make_head(cfg: SearchConfig, embedding_size: int, num_classes: int) -> nn.Module:
    """The child's classifier: a linear softmax (Eq. 1) or PartialFC with all centres and a margin head."""
    if cfg.child_head == "softmax":
        return _SoftmaxHead(embedding_size, num_classes)
    from facenas.adapters.insightface.losses import build_margin_head
    from facenas.adapters.insightface.partial_fc import PartialFC

    margin = build_margin_head(cfg.child_head, tuple(cfg.margin_list), float(cfg.margin_scale))
    return _MarginHead(PartialFC(margin, embedding_size, num_classes, sample_rate=1.0, seed=cfg.seed))


def _empty_child_epoch() -> dict[str, float]:
    """The running sums behind an epoch's child metrics (checkpointed: an epoch may resume mid-way)."""
    return {"loss_sum": 0.0, "batches": 0, "correct": 0, "seen": 0, "lr": 0.0}


class EnasSearch(LoopTask):
    """One ENAS search run on the shared loop (see the module docstring).

    The loop's step is one child minibatch (Algorithm 1 lines 3-6), its epoch end the controller's
    REINFORCE epoch (lines 7-12), its final the ranking of candidate arcs.

    Args:
        config: the search configuration.
        out_dir: where checkpoints and results go.
        reporter: receives per-epoch metrics (optional; the final ones are the caller's to report).
        latency_model: overrides ``config.latency`` (e.g. a table built in a test).
        data: pre-loaded search data (default: read ``config.rec``).
    """

    desc = "ENAS child"

    def __init__(self, config: SearchConfig, out_dir: str | Path, reporter: Reporter | None = None,
                 latency_model: LatencyModel | None = None, data: SearchData | None = None):
        cfg = config
        cfg.validate("search config")
        self.cfg = cfg
        self.out = Path(out_dir)
        self.reporter = reporter
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)  # before the data is read: a wrong device fails at once
        self.space = create_space(cfg.space, **cfg.space_config)
        image_size = cfg.image_size or self.space.input_size[0]
        if image_size != self.space.input_size[0]:
            raise ConfigError(f"image_size {image_size} differs from the space's input_size {self.space.input_size[0]}; "
                              "set space_config.input_size to the image size")
        self.reward_cfg = RewardConfig.from_dict(cfg.reward, source="search config reward")
        self.latency = latency_model if latency_model is not None else build_latency_model(cfg.latency, self.space)
        if self.reward_cfg.target_ms is not None and self.latency is None:
            raise ConfigError("reward.target_ms is set but there is no latency model (config.latency)")
        self.data = data if data is not None else load_search_data(cfg.resolved_rec(), image_size, cfg.split,
                                                                    cfg.split_seed)
        if len(self.data.val) == 0:
            raise FacenasError(f"the validation split of {cfg.rec} is empty (identities with < 3 images get none); "
                               "use data with more images per identity or larger split fractions")
        torch.manual_seed(cfg.seed)
        self.supernet = self.space.supernet()
        self.head = _make_head(cfg, self.space.cfg.embedding_size, self.data.num_classes)
        # the shared child weights train on `device`; batches move there in step / accuracy
        self.supernet.to(self.device)
        self.head.to(self.device)
        if self.device.type != "cpu":
            log.info("ENAS child on %s (the controller on the CPU)", self.device)
        params = list(self.supernet.parameters()) + list(self.head.parameters())
        self.child_opt = torch.optim.SGD(params, lr=cfg.child_lr, momentum=cfg.child_momentum,
                                         weight_decay=cfg.child_weight_decay)
        n_batches = len(self.data.train) // cfg.batch_size
        if n_batches < 1:
            raise FacenasError(f"the training split has {len(self.data.train)} images, fewer than one batch of "
                               f"{cfg.batch_size}; lower batch_size")
        self.epochs = cfg.epochs
        self.steps_per_epoch = min(n_batches, cfg.steps_per_epoch) if cfg.steps_per_epoch else n_batches
        self.warmup_steps = min(int(self.steps_per_epoch * cfg.child_warmup_epochs), self.total_steps() - 1)
        self.controller = Controller(self.space, ControllerConfig.from_dict(cfg.controller), seed=cfg.seed)
        self.trainer = ReinforceTrainer(self.controller)
        # the child batches' order and flips; the loop checkpoints it and re-creates a resumed epoch from it
        self.data_generator = self.data_gen = torch_generator(cfg.seed + 101)
        self.val_gen = torch_generator(cfg.seed + 202)
        self.controller_step = 0
        self.controller_seconds = 0.0
        self.child_epoch = _empty_child_epoch()
        self.history: list[dict[str, Any]] = []
        self.epoch_log: list[dict[str, Any]] = []

    # -- pieces ---------------------------------------------------------------------------------
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs

    def latency_of(self, sample: Mapping[str, Any]) -> float | None:
        return None if self.latency is None else float(self.latency(sample))

    def _set_lr(self, step: int) -> float:
        cfg = self.cfg
        lr = child_lr_at(step, self.total_steps(), self.warmup_steps, cfg.child_lr, cfg.child_lr_min)
        for group in self.child_opt.param_groups:
            group["lr"] = lr
        return lr

    # -- Algorithm 1 lines 3-6: the loop's steps -------------------------------------------------
    def start_epoch(self, state: LoopState) -> None:
        self.supernet.train()
        self.head.train()

    def batches(self, state: LoopState) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's minibatches: one shuffled, flipped pass (``data_gen``) cut at ``steps_per_epoch``.

        Reading stops at the first batch past the cut (its flips are drawn from ``data_gen``, as
        they always were), so the generator's stream -- and every earlier search -- is unchanged.
        """
        cfg = self.cfg
        for i, batch in enumerate(self.data.train.batches(cfg.batch_size, generator=self.data_gen, flip=True,
                                                          drop_last=True)):
            if i >= self.steps_per_epoch:
                return
            yield batch

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], state: LoopState) -> dict[str, Any]:
        """A fresh arc from the controller for this minibatch; the shared weights updated by SGD."""
        cfg = self.cfg
        x, y = batch[0].to(self.device), batch[1].to(self.device)
        sample = self.controller.sample()
        self.supernet.activate(sample)
        lr = self._set_lr(state.global_step)
        emb = self.supernet(x)
        loss = self.head(emb, y)
        if not torch.isfinite(loss):
            raise Diverged("child loss", float(loss), f"lower child_lr (now {cfg.child_lr}) or raise "
                           "child_warmup_epochs", lr=lr)
        self.child_opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.child_grad_clip > 0:
            nn.utils.clip_grad_norm_(self.supernet.parameters(), cfg.child_grad_clip)
        self.child_opt.step()
        value = float(loss.detach())
        with torch.no_grad():
            correct = int((self.head.logits(emb.detach()).argmax(1) == y).sum())
        run = self.child_epoch
        run["loss_sum"] += value
        run["batches"] += 1
        run["correct"] += correct
        run["seen"] += len(y)
        run["lr"] = lr
        return {"loss": value, "lr": lr}

    # -- Algorithm 1 lines 7-12: the loop's epoch end ----------------------------------------------
    @torch.no_grad()
    def accuracy(self, sample: Mapping[str, Any], x: torch.Tensor, y: torch.Tensor) -> float:
        """Top-1 identity accuracy of ``sample`` on ``(x, y)`` with the shared weights (batch-stat BN)."""
        x, y = x.to(self.device), y.to(self.device)  # no copy when already there (the controller's batch)
        self.supernet.activate(sample)
        with batch_stat_bn(self.supernet):
            logits = self.head.logits(self.supernet(x))
        return float((logits.argmax(1) == y).float().mean())

    def rewards(self, accs: list[float], lats: list[float | None]) -> list[float]:
        if self.cfg.reward_mode == "per_arc":
            return [latency_reward(a, lat, self.reward_cfg) for a, lat in zip(accs, lats)]
        mean_acc = sum(accs) / len(accs)
        mean_lat = None if lats[0] is None else sum(lats) / len(lats)  # type: ignore[arg-type]
        return [latency_reward(mean_acc, mean_lat, self.reward_cfg)] * len(accs)

    def _val_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.data.val)
        idx = torch.randperm(n, generator=self.val_gen)[:min(n, self.cfg.val_batch_size)]
        # on the child's device once: the step's Q arcs are all evaluated on this batch
        return self.data.val.images[idx].to(self.device), self.data.val.labels[idx].to(self.device)

    def train_controller_epoch(self, epoch: int) -> dict[str, float]:
        """S REINFORCE steps, each over Q arcs on one validation minibatch (``epoch``: 1-based, for the history)."""
        cfg = self.cfg
        stats: dict[str, list[float]] = {k: [] for k in ("reward", "accuracy", "latency_ms", "entropy", "controller_loss")}
        for _ in range(cfg.controller_steps):
            x, y = self._val_batch()
            samples = [self.controller.sample() for _ in range(cfg.arcs_per_step)]
            accs = [self.accuracy(s, x, y) for s in samples]
            lats = [self.latency_of(s) for s in samples]
            rewards = self.rewards(accs, lats)
            step = self.trainer.update(samples, rewards)
            self.controller_step += 1
            for s, a, lat, r in zip(samples, accs, lats, rewards):
                self.history.append({"epoch": epoch, "controller_step": self.controller_step, "sample": s,
                                     "accuracy": a, "latency_ms": lat, "reward": r})
            stats["reward"].append(sum(rewards) / len(rewards))
            stats["accuracy"].append(sum(accs) / len(accs))
            if lats[0] is not None:
                stats["latency_ms"].append(sum(lats) / len(lats))  # type: ignore[arg-type]
            stats["entropy"].append(step["entropy"])
            stats["controller_loss"].append(step["controller_loss"])
        out = {k: sum(v) / len(v) for k, v in stats.items() if v}
        out["baseline"] = float(self.trainer.baseline or 0.0)
        return out

    def end_epoch(self, state: LoopState) -> dict[str, Any]:
        """The controller's epoch and the epoch's metrics (``default`` = the mean reward).

        At a time-budget stop inside an epoch the loop calls this before the epoch is complete:
        the controller is not trained then (it will be when a resumed run completes the epoch),
        and ``default`` repeats the last epoch's reward (0, the lowest reward, before the first).
        """
        run = self.child_epoch
        child = {"child_loss": run["loss_sum"] / max(1, run["batches"]),
                 "child_train_acc": run["correct"] / max(1, run["seen"]), "lr": run["lr"]}
        if state.stopped_early:
            return {**child, "default": self.epoch_log[-1]["reward"] if self.epoch_log else 0.0}
        t0 = time.monotonic()
        ctrl = self.train_controller_epoch(state.epoch)
        metrics = {**child, **ctrl}
        if self.latency is not None:
            metrics["greedy_latency_ms"] = self.latency_of(self.controller.greedy())
        metrics["default"] = metrics["reward"]
        seconds = time.monotonic() - t0
        self.controller_seconds += seconds
        metrics["controller_seconds"] = round(seconds, 2)
        self.epoch_log.append({"epoch": state.epoch, **metrics})
        self.child_epoch = _empty_child_epoch()
        log.info("epoch %d/%d: reward %.4f acc %.4f latency %s entropy %.3f (controller %.0f s)", state.epoch,
                 self.cfg.epochs, metrics["reward"], metrics["accuracy"], metrics.get("latency_ms"),
                 metrics["entropy"], seconds)
        return metrics

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"supernet": self.supernet.state_dict(), "head": self.head.state_dict(),
                "child_opt": self.child_opt.state_dict(), "controller": self.trainer.state_dict(),
                "val_gen": self.val_gen.get_state(), "controller_step": self.controller_step,
                "controller_seconds": self.controller_seconds, "child_epoch": dict(self.child_epoch),
                "history": self.history, "epoch_log": self.epoch_log}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # the checkpoint is read onto the CPU; module and optimiser loading copy / cast it onto `device`
        self.supernet.load_state_dict(state["supernet"])
        self.head.load_state_dict(state["head"])
        self.child_opt.load_state_dict(state["child_opt"])
        self.trainer.load_state_dict(state["controller"])
        self.val_gen.set_state(state["val_gen"])
        self.controller_step = int(state["controller_step"])
        self.controller_seconds = float(state["controller_seconds"])
        self.child_epoch = dict(state["child_epoch"])
        self.history = list(state["history"])
        self.epoch_log = list(state["epoch_log"])

    # -- the run --------------------------------------------------------------------------------
    def run(self, on_step: Any = None) -> dict[str, Any]:
        """Alternate child and controller epochs on the shared loop, then rank candidates; returns
        the final metrics (also in ``final.json``). ``on_step`` is the loop's per-step hook."""
        cfg = self.cfg
        loop = Loop(self, LoopConfig(output=str(self.out), resume=cfg.resume, overwrite=cfg.overwrite,
                                     checkpoint_every=cfg.checkpoint_every, max_minutes=cfg.max_minutes,
                                     may_change=RESUME_MAY_CHANGE),
                    settings=cfg.to_dict(), reporter=self.reporter, on_step=on_step, report_final=False,
                    run_files=("candidates.json", "arcs_history.json", ARCH,
                               *(f"top{i}_arch.json" for i in range(1, cfg.top_k + 1))))
        loop.claim_output()
        write_json(self.out / CONFIG, {**cfg.to_dict(), "space_config": self.space.config(),
                                       "latency_model": self.latency.info() if self.latency else None,
                                       "data": self.data.summary()})
        return loop.run()

    # -- Algorithm 2's first step: the loop's final ------------------------------------------------
    def sample_candidates(self, n: int) -> list[dict[str, Any]]:
        """``n`` distinct arcs from the policy (bounded: 50 n draws, then whatever was found)."""
        seen: dict[tuple, dict[str, Any]] = {}
        for _ in range(50 * n):
            s = self.controller.sample()
            seen.setdefault(tuple(str(s[k]) for k in sorted(s)), s)
            if len(seen) >= n:
                break
        if len(seen) < n:
            log.warning("the policy produced only %d distinct arcs in %d draws (asked for %d)", len(seen), 50 * n, n)
        return list(seen.values())

    @torch.no_grad()
    def validation_accuracy(self, sample: Mapping[str, Any], split: str = "val") -> float:
        part = getattr(self.data, split)
        correct = 0
        for x, y in part.batches(self.cfg.val_batch_size):
            correct += self.accuracy(sample, x, y) * len(y)
        return correct / len(part)

    def final(self, state: LoopState) -> dict[str, Any]:
        """Rank ``candidates`` sampled arcs by validation accuracy; write the top ``top_k`` (best first)."""
        from facenas.nas.flops import count_flops

        cfg = self.cfg
        samples = self.sample_candidates(cfg.candidates)
        progress = Progress(len(samples), "ranking candidate arcs", unit="arc", interval=30)
        ranked = []
        for s in samples:
            acc = self.validation_accuracy(s)
            lat = self.latency_of(s)
            net = self.space.build(s)
            ranked.append({"sample": s, "val_acc": acc, "latency_ms": lat,
                           "reward": latency_reward(acc, lat, self.reward_cfg),
                           "log_prob": self.controller.log_prob(s),
                           "mflops": count_flops(net, (1, 3, *self.space.input_size)) / 1e6,
                           "params_m": sum(p.numel() for p in net.parameters()) / 1e6})
            progress.update()
        progress.close()
        ranked.sort(key=lambda r: r["val_acc"], reverse=True)
        for i, r in enumerate(ranked, 1):
            r["rank"] = i
        write_json(self.out / "candidates.json", ranked)
        write_json(self.out / "arcs_history.json", self.history)
        best = ranked[0]
        metrics = {"default": best["val_acc"], "val_acc": best["val_acc"], "latency_ms": best["latency_ms"],
                   "mflops": best["mflops"], "params_m": best["params_m"], "epochs": state.epoch,
                   "reward": self.epoch_log[-1]["reward"] if self.epoch_log else None,
                   "search_seconds": round(state.train_seconds + self.controller_seconds, 1),
                   "out_dir": str(self.out)}
        return ranked_result(metrics, self.out, [(self.space.describe(r["sample"]),
                                                  {k: v for k, v in r.items() if k != "sample"})
                                                 for r in ranked[:cfg.top_k]])


#: the settings a resumed search may change (any other must match the checkpoint's)
RESUME_MAY_CHANGE = ("epochs", "resume", "overwrite", "max_minutes", "threads", "device", "checkpoint_every")


def run_search(config: SearchConfig, out_dir: str | Path, reporter: Reporter | None = None,
               latency_model: LatencyModel | None = None, data: SearchData | None = None,
               on_step: Any = None) -> dict[str, Any]:
    """Run (or resume) an ENAS search; see :class:`EnasSearch`. ``on_step``: the loop's per-step hook."""
    from facenas.utils.lock import output_lock

    with output_lock(out_dir, "ENAS search"):  # one writer per output folder
        return EnasSearch(config, out_dir, reporter, latency_model, data).run(on_step=on_step)


__all__ = ["CHECKPOINT", "EnasSearch", "RESUME_MAY_CHANGE", "SearchConfig", "child_lr_at", "run_search", "warped_cosine"]
