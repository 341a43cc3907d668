"""One resumable training loop for every method: engine.train, the OFA supernet, TNAS and ENAS.

A method supplies a :class:`LoopTask` -- its data for an epoch, one optimiser step, what happens at
an epoch's end, its own state and its final metrics -- and :class:`Loop` does the rest, the same
way for all of them (as NNI's one-shot strategies supply a ``training_step`` to Lightning):

* ``checkpoint.pt`` (``checkpoint_rank<r>.pt`` under DDP), written atomically at every epoch end,
  every ``checkpoint_every`` steps and whenever the task asks; loadable with
  ``torch.load(weights_only=True)`` -- a resumed run continues with exactly the same data, random
  numbers and weights as one that was never stopped (also after ``kill -9``);
* the RNG-exact epoch iterator: the torch RNG (and the loader's generator) are captured when an
  epoch's iterator is created, so a run resumed mid-epoch re-creates the same iterator and skips
  the batches already trained on;
* the time budget (``max_minutes`` of training time), progress lines with rate and ETA,
  ``train_metrics.jsonl`` (train / epoch / final records, cut back to the checkpoint on resume),
  ``final.json`` and the reporter's intermediate and final metrics;
* a fresh run refuses a folder holding another run (``resume`` or ``overwrite``), a finished run
  resumed reports its ``final.json`` unchanged, and a resume with different settings is refused
  naming them.

Checkpoint layout (``facenas.train/1``): the loop's fields (:class:`LoopState`), ``rng``,
``config``, ``world_size``, ``rank`` and the task's own :meth:`LoopTask.state_dict` keys, flat.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch

from facenas.errors import ConfigError, DataFormatError, FacenasError, OutputFolderError
from facenas.nas.results import CONFIG as CONFIG_FILE
from facenas.nas.results import FINAL as FINAL_FILE
from facenas.nas.results import METRICS as METRICS_FILE
from facenas.utils.io import append_jsonl, atomic_write, dumps, read_json, read_jsonl, write_json
from facenas.utils.progress import Progress

from . import distributed as D
from .checkpoint import (TRAIN_FORMAT, agreed_checkpoint, capture_rng, checkpoint_path, read_model_file,
                         restore_rng, save_rank_state)

log = logging.getLogger(__name__)


class TrainingDivergedError(FacenasError):
    """The loss (or gradient norm) became NaN / inf; the run stopped before updating the weights."""


class Diverged(Exception):
    """Raised by :meth:`LoopTask.step` before it updates anything: ``what`` became ``value``.

    The loop turns it into one :class:`TrainingDivergedError` line naming the step, the epoch and
    the last good checkpoint, followed by the task's ``fix``.
    """

    def __init__(self, what: str, value: float, fix: str, lr: float | None = None):
        super().__init__(what)
        self.what, self.value, self.fix, self.lr = what, value, fix, lr


@dataclasses.dataclass
class LoopState:
    """Where a run stands; saved in every checkpoint. ``extra`` holds the task's own counters."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0
    global_step: int = 0
    train_seconds: float = 0.0
    epoch_rng: dict[str, Any] | None = None
    stopped_early: bool = False
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


LOOP_KEYS = tuple(f.name for f in dataclasses.fields(LoopState))
RESERVED_KEYS = (*LOOP_KEYS, "format", "rng", "config", "world_size", "rank")


class LoopTask:
    """What a method supplies to :class:`Loop`; override what the method needs.

    Attributes:
        epochs: how many epochs to train.
        desc: the progress lines' label.
        data_generator: the loader's ``torch.Generator`` (its state is part of the RNG-exact resume).
        images_per_step: images one step trains on (all processes); when set, the ``train`` records
            of ``train_metrics.jsonl`` carry ``images_per_s``.
    """

    epochs: int = 1
    desc: str = "train"
    data_generator: torch.Generator | None = None
    images_per_step: int | None = None

    def total_steps(self) -> int | None:
        """Optimiser steps in the whole run (progress and ETA), None when unknown."""
        return None

    def epoch_steps(self, state: LoopState) -> int | None:
        """The most steps this epoch may take (None: until its data ends)."""
        return None

    def start_epoch(self, state: LoopState) -> None:
        """Before the epoch's iterator is created (``sampler.set_epoch``, a new phase...)."""

    def epoch_data(self, state: LoopState, skip: int) -> Iterator:
        """An iterator over this epoch's batches, positioned after its first ``skip`` batches.

        The default skips by drawing them from :meth:`batches`; a sampler that can start
        mid-epoch overrides this to skip without loading.
        """
        iterator = iter(self.batches(state))
        for _ in range(skip):
            next(iterator)
        if skip:
            log.info("skipped %d batches already trained on in epoch %d", skip, state.epoch)
        return iterator

    def batches(self, state: LoopState) -> Iterable:
        raise NotImplementedError(f"{type(self).__name__} must define batches() or epoch_data()")

    def step(self, batch: Any, state: LoopState) -> dict[str, Any]:
        """One optimiser step (``state.global_step`` is the number of steps before it); returns
        its record (``loss``, ``lr``, ...). Raise :class:`Diverged` before updating anything."""
        raise NotImplementedError

    def after_step(self, state: LoopState, record: Mapping[str, Any]) -> str | None:
        """After the loop counted the step: a reason to checkpoint now (e.g. ``"verification"``), or None."""
        return None

    def can_checkpoint(self, state: LoopState) -> bool:
        """False while a checkpoint would be inconsistent (e.g. between accumulated gradients)."""
        return True

    def end_epoch(self, state: LoopState) -> dict[str, Any]:
        """At an epoch's end (``state.epoch`` already counts it) or at the time budget: its metrics."""
        return {}

    def after_checkpoint(self, state: LoopState, reason: str) -> None:
        """After ``checkpoint.pt`` was written (e.g. write ``last.pt`` from the same weights)."""

    def done(self, state: LoopState) -> bool:
        """True when the run is over before its last epoch (e.g. a total step count reached)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """The task's weights, optimisers, schedulers and generators (tensors and plain containers)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s keys from a checkpoint."""

    def final(self, state: LoopState) -> dict[str, Any]:
        """The run's final metrics (``final.json``)."""
        return {}

    def finished(self, final: Mapping[str, Any]) -> None:
        """A resumed run that had already finished: ``final`` is its ``final.json``."""


@dataclasses.dataclass
class LoopConfig:
    """How :class:`Loop` runs a task; the fields every method's config shares."""

    output: str
    resume: bool = False
    overwrite: bool = False
    checkpoint_every: int = 0
    max_minutes: float | None = None
    log_every: int = 50
    progress_interval: float = 15.0
    #: config fields a resumed run may change (anything else must match the checkpoint's config)
    may_change: tuple[str, ...] = ("resume", "overwrite", "max_minutes", "threads", "num_workers", "checkpoint_every",
                                   "verbose", "frequent", "output")
    #: when set, only these config fields must match the checkpoint's (``may_change`` is then unused):
    #: for a method whose resume may change most settings (e.g. a lower lr after a divergence)
    must_match: tuple[str, ...] | None = None


class Loop:
    """Run ``task`` to its end (or its time budget), checkpointing and resuming; see the module docstring.

    Args:
        task: the method's :class:`LoopTask`.
        config: output folder, resume / overwrite, checkpoint interval, time budget.
        settings: the method's full config as a dict (saved in checkpoints; a resume must match it
            except for ``config.may_change``).
        reporter: gets the epoch metrics (``intermediate``) and the final ones.
        on_step: called after each step with ``{"step", "epoch", **record}`` (tests kill runs with it).
        dist_info: this process's place in a torchrun group (default: one process).
        run_files: files of a previous run that ``overwrite`` deletes (besides checkpoints and the
            loop's own files).
        report_final: send the final metrics to ``reporter`` (a stage adding its own sends them itself).
    """

    def __init__(self, task: LoopTask, config: LoopConfig, settings: Mapping[str, Any], reporter: Any = None,
                 on_step: Any = None, dist_info: D.DistInfo | None = None, run_files: Iterable[str] = (),
                 report_final: bool = True):
        self.task = task
        self.cfg = config
        self.settings = dict(settings)
        self.reporter = reporter
        self.on_step = on_step
        self.dist = dist_info or D.DistInfo()
        self.out = Path(config.output)
        self.run_files = (FINAL_FILE, METRICS_FILE, CONFIG_FILE, *run_files)
        self.report_final = report_final
        self.state = LoopState()
        self.checkpoint_file = checkpoint_path(self.out, self.dist.rank, self.dist.world_size)
        self.last_good: tuple[str, int] | None = None  # (checkpoint, step) of the last written checkpoint
        self.resumed = False
        self._claimed = False

    # -- output folder ----------------------------------------------------------------------------
    def claim_output(self) -> None:
        """A fresh run refuses a folder holding another run (finished or not) unless ``overwrite``.

        :meth:`run` calls it; a caller with slow set-up calls it first, to fail before that work.
        """
        if self._claimed:
            return
        self._claimed = True
        self.out.mkdir(parents=True, exist_ok=True)
        if self.cfg.resume:
            return
        previous = sorted({p.name for p in self.out.glob("checkpoint*.pt")}
                          | {n for n in self.run_files if (self.out / n).exists()})
        if not previous:
            return
        if not self.cfg.overwrite:
            what = "a finished run" if (self.out / FINAL_FILE).is_file() else "an interrupted run"
            raise OutputFolderError(
                f"output folder {self.out} already holds {what} ({', '.join(previous)}); continue it with --resume "
                "(resume=True), replace it with --overwrite (overwrite=True), or train into a new --output folder")
        if self.dist.is_main:
            log.warning("overwrite=True: deleting the previous run's %s in %s", ", ".join(previous), self.out)
            for path in [*self.out.glob("checkpoint*.pt"), *self.out.glob("epoch_*.pt"),
                         *(self.out / n for n in self.run_files)]:
                path.unlink(missing_ok=True)

    # -- checkpoints ------------------------------------------------------------------------------
    def state_record(self) -> dict[str, Any]:
        own = self.task.state_dict()
        clash = sorted(set(own) & set(RESERVED_KEYS))
        if clash:
            raise FacenasError(f"{type(self.task).__name__}.state_dict() uses the loop's keys {clash}; rename them")
        loader = self.task.data_generator
        return {"format": TRAIN_FORMAT, **dataclasses.asdict(self.state),
                "rng": {**capture_rng(), "loader": loader.get_state() if loader is not None else None},
                "config": self.settings, "world_size": self.dist.world_size, "rank": self.dist.rank, **own}

    def checkpoint(self, reason: str) -> bool:
        """Write the checkpoint (all ranks); False when the task says it cannot be taken now."""
        if not self.task.can_checkpoint(self.state):
            log.debug("checkpoint skipped at step %d", self.state.global_step)
            return False
        save_rank_state(self.state_record(), self.checkpoint_file, keep_previous=self.dist.distributed)
        self.last_good = (str(self.checkpoint_file), self.state.global_step)
        self.task.after_checkpoint(self.state, reason)
        D.barrier(self.dist)
        return True

    def load(self) -> dict[str, Any]:
        """Read this rank's checkpoint (the newest step every rank has), check it, restore the task."""
        path = agreed_checkpoint(self.checkpoint_file, self.dist)
        if not path.is_file():
            raise ConfigError(f"resume=True but there is no training checkpoint at {path}; "
                              "run without --resume first, or point output at the run to continue")
        state = read_model_file(path)
        if not isinstance(state, dict) or state.get("format") != TRAIN_FORMAT:
            raise DataFormatError(str(path), f"not a facenas training checkpoint (format {TRAIN_FORMAT})")
        if state.get("world_size", 1) != self.dist.world_size:
            raise ConfigError(f"{path} was written by {state.get('world_size')} process(es); resume with the same "
                              f"number (now {self.dist.world_size})")
        self._check_settings(path, state.get("config") or {})
        self.task.load_state_dict(state)
        self.state = LoopState(**{k: state[k] for k in LOOP_KEYS if k in state})
        self.last_good = (str(path), self.state.global_step)
        self.resumed = True
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.state.global_step, self.state.epoch,
                 self.state.step_in_epoch)
        return state

    def _check_settings(self, path: Path, saved: Mapping[str, Any]) -> None:
        if self.cfg.must_match is not None:
            keep = set(self.cfg.must_match)
            now = {k: v for k, v in self.settings.items() if k in keep}
            before = {k: v for k, v in saved.items() if k in keep}
            rule = f"{', '.join(sorted(keep))} must stay as they were"
        else:
            skip = set(self.cfg.may_change)
            now = {k: v for k, v in self.settings.items() if k not in skip}
            before = {k: v for k, v in saved.items() if k not in skip}
            rule = f"only {', '.join(sorted(skip))} may change"
        differ = sorted(k for k in set(now) | set(before) if _plain(now.get(k)) != _plain(before.get(k)))
        if differ:
            shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in differ[:4])
            raise ConfigError(f"{path} was written with other settings ({shown}); resume with the checkpoint's "
                              f"settings ({rule}) or train into a new output folder")

    # -- metrics ------------------------------------------------------------------------------------
    def log_json(self, record: Mapping[str, Any]) -> None:
        if self.dist.is_main:
            append_jsonl(self.out / METRICS_FILE, {"time": round(time.time(), 3), **record})

    def _truncate_metrics(self) -> None:
        """Drop the records a killed run logged after its checkpoint (and its final one): the resumed
        run logs those steps again, so the log holds each step once."""
        path = self.out / METRICS_FILE
        records = metric_records(path)
        step = self.state.global_step
        keep = [r for r in records if r.get("type") != "final" and int(r.get("step", 0) or 0) <= step]
        if len(keep) == len(records) and (not path.is_file() or not records
                                          or path.read_text(encoding="utf-8").endswith("\n")):
            return
        with atomic_write(path, "w") as fh:
            fh.writelines(dumps(r) + "\n" for r in keep)
        if len(keep) != len(records):
            log.info("dropped %d record(s) after step %d from %s (logged after the last checkpoint)",
                     len(records) - len(keep), step, path)

    def _finished_result(self) -> dict[str, Any] | None:
        path = self.out / FINAL_FILE
        if not path.is_file():
            return None
        try:
            final = read_json(path)
        except ValueError:
            return None
        return final if isinstance(final, dict) and final.get("global_step") == self.state.global_step else None

    # -- the loop -----------------------------------------------------------------------------------
    def _epoch_iterator(self, resume_rng: dict[str, Any] | None) -> Iterator:
        st, gen = self.state, self.task.data_generator
        if resume_rng is not None and st.epoch_rng is not None and st.step_in_epoch > 0:
            # re-create the interrupted epoch's iterator from the RNG states it was made with
            torch.set_rng_state(st.epoch_rng["torch"])
            self._set_loader_state(st.epoch_rng.get("loader"))
            iterator = self.task.epoch_data(st, st.step_in_epoch)
            self._restore_rng(resume_rng)
            return iterator
        if resume_rng is not None:  # a checkpoint at an epoch boundary
            self._restore_rng(resume_rng)
        st.epoch_rng = {"torch": torch.get_rng_state(), "loader": gen.get_state() if gen is not None else None}
        return self.task.epoch_data(st, 0)

    def _restore_rng(self, rng: dict[str, Any]) -> None:
        """Every RNG as the checkpoint holds it: torch, numpy, Python (:func:`restore_rng`) and the loader's."""
        restore_rng(rng)
        self._set_loader_state(rng.get("loader"))

    def _set_loader_state(self, state: torch.Tensor | None) -> None:
        gen = self.task.data_generator
        if gen is not None and state is not None:
            gen.set_state(state)

    def _diverged(self, exc: Diverged) -> TrainingDivergedError:
        st = self.state
        step = st.global_step + 1
        where = (f"the last good checkpoint is {self.last_good[0]} (step {self.last_good[1]})" if self.last_good
                 else "no checkpoint was written yet")
        self.log_json({"type": "diverged", "step": step, "epoch": st.epoch, "what": exc.what, "value": str(exc.value)})
        lr = f", lr {exc.lr:.4g}" if exc.lr is not None else ""
        return TrainingDivergedError(f"{exc.what} became {exc.value} at step {step} (epoch {st.epoch}{lr}); training "
                                     f"stopped before updating the weights and {where}. Fix: {exc.fix}")

    def run(self) -> dict[str, Any]:
        """Train to the end (or the time budget); returns the final metrics (also in ``final.json``)."""
        task, st_cfg = self.task, self.cfg
        self.claim_output()
        resume_rng = None
        if st_cfg.resume:
            resume_rng = self.load()["rng"]
            st = self.state
            if st.epoch >= task.epochs or task.done(st):  # nothing left to train
                finished = self._finished_result()
                if finished is not None:
                    log.info("the run in %s had already finished at step %d; reporting its final.json", self.out,
                             st.global_step)
                    task.finished(finished)
                    if self.reporter is not None and self.dist.is_main and self.report_final:
                        self.reporter.final(finished)
                    return finished
            if self.dist.is_main:
                self._truncate_metrics()
        st = self.state
        st.stopped_early = False
        t_start = time.monotonic()
        progress_log = logging.getLogger("facenas.progress" if self.dist.is_main
                                         else f"facenas.progress.rank{self.dist.rank}")
        if not self.dist.is_main:
            progress_log.setLevel(logging.WARNING)  # one progress line per step count, from rank 0
        progress = Progress(task.total_steps(), task.desc, unit="step", interval=st_cfg.progress_interval,
                            start=st.global_step, logger=progress_log)
        loss_sum, loss_n = 0.0, 0
        while st.epoch < task.epochs and not st.stopped_early and not task.done(st):
            task.start_epoch(st)
            iterator = self._epoch_iterator(resume_rng)
            resume_rng = None
            limit = task.epoch_steps(st)
            t_last = time.monotonic()  # training time includes data loading, not verification/checkpoints
            while limit is None or st.step_in_epoch < limit:
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                try:
                    record = task.step(batch, st)
                except Diverged as exc:
                    raise self._diverged(exc) from None
                st.global_step += 1
                st.step_in_epoch += 1
                now = time.monotonic()
                st.train_seconds += now - t_last
                t_last = now
                loss = record.get("loss")
                shown = {k: v for k, v in record.items() if k in ("loss", "lr") and v is not None}
                progress.update(1, **shown, epoch=st.epoch)
                if isinstance(loss, (int, float)):
                    loss_sum, loss_n = loss_sum + float(loss), loss_n + 1
                if st_cfg.log_every and st.global_step % st_cfg.log_every == 0:
                    self.log_json({"type": "train", "step": st.global_step, "epoch": st.epoch,
                                   **{k: v for k, v in record.items() if isinstance(v, (int, float, str))},
                                   **({"loss": loss_sum / loss_n} if loss_n else {}),
                                   "steps_per_s": round(progress.rate, 4),
                                   **({"images_per_s": round(progress.rate * task.images_per_step, 2)}
                                      if task.images_per_step else {}),
                                   "train_seconds": round(st.train_seconds, 2)})
                    loss_sum, loss_n = 0.0, 0
                if self.on_step is not None:
                    self.on_step({**record, "step": st.global_step, "epoch": st.epoch})
                reason = task.after_step(st, record)
                if reason is None and st_cfg.checkpoint_every and st.global_step % st_cfg.checkpoint_every == 0:
                    reason = "checkpoint_every"
                if reason is not None:
                    self.checkpoint(reason)
                    t_last = time.monotonic()
                if st_cfg.max_minutes is not None and st.train_seconds >= st_cfg.max_minutes * 60:
                    log.warning("max_minutes=%s reached at step %d (epoch %d); stopping", st_cfg.max_minutes,
                                st.global_step, st.epoch)
                    st.stopped_early = True
                    break
                if task.done(st):
                    break
            del iterator
            if not st.stopped_early:
                st.epoch += 1
                st.step_in_epoch = 0
                st.epoch_rng = None
            metrics = {"epoch": st.epoch, "step": st.global_step, **task.end_epoch(st),
                       "train_seconds": round(st.train_seconds, 2)}
            self.checkpoint("epoch" if not st.stopped_early else "max_minutes")
            self.log_json({"type": "epoch", **metrics})
            if self.reporter is not None and self.dist.is_main:
                self.reporter.intermediate({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if self.dist.is_main:
            progress.close()
        final = {**task.final(st), "global_step": st.global_step, "train_seconds": round(st.train_seconds, 2),
                 "wall_seconds": round(time.monotonic() - t_start, 2), "stopped_early": st.stopped_early}
        self.log_json({"type": "final", **final})
        if self.dist.is_main:
            write_json(self.out / FINAL_FILE, final)
            if self.reporter is not None and self.report_final:
                self.reporter.final(final)
        return final


#: the JSON lines of a metrics log (a line a kill cut short is skipped)
metric_records = read_jsonl


def _plain(value: Any) -> Any:
    """Lists and tuples compare equal after a JSON round trip."""
    return json.loads(dumps(value)) if value is not None else None


__all__ = ["Diverged", "Loop", "LoopConfig", "LoopState", "LoopTask", "TrainingDivergedError", "metric_records"]
