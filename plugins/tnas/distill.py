"""Training a derived student from scratch by feature distillation, through the training engine
(TNAS Sec. "Training": "the final searched student network is constructed by the selected width
and depth, whose parameters are then learned by knowledge distillation").

:func:`train_student` runs :func:`facenas.plugins.engine.train` -- the same loop, LR schedule,
checkpoints, resume, verification and reporting as every facenas training -- with

* the student built from an architecture description (``get_model``), so ``best.pt`` /
  ``last.pt`` are ordinary ``facenas.model/1`` files that rebuild it;
* a :class:`~facenas.plugins.tnas.data.DistillLoader` that yields the engine's ``(images,
  labels)`` batches and records each batch's keys in a :class:`BatchHolder`;
* a :class:`DistillationHead` in place of the margin head: its loss is
  ``distill_weight * H(F_S, F_T)`` (Eq. 2) plus, optionally, ``margin_weight`` times the margin
  loss of the recipe's head (PartialFC + ArcFace/CosFace...), where ``F_T`` comes from the frozen
  teacher (cached per image and flip).

With ``distill_weight=0`` and ``margin_weight=1`` it is the plain margin-loss student ("AM" in
the paper's tables), trained by the same loop on the same batches.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from facenas.errors import ConfigError
from facenas.nas.report import Reporter
from facenas.plugins.tnas.data import BatchHolder, DistillLoader, EpochBatchSampler, KeyedFaceDataset, describe_data, keyed_loader
from facenas.plugins.tnas.teacher import DistillationLoss, TeacherFeatures, cache_identity, load_teacher

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DistillSettings:
    """How the student learns from the teacher.

    Args:
        teacher: teacher checkpoint path / spec (None only when ``distill_weight`` is 0).
        teacher_network: arcface_torch network name of a bare ``model.pt`` teacher.
        distill_weight: weight of the feature-distillation loss.
        margin_weight: weight of the recipe's margin loss (0 = pure FKD, as the paper's TNAS).
        distill_loss: ``l2`` or ``mse`` (see :class:`~facenas.plugins.tnas.teacher.DistillationLoss`).
        projection: ``auto`` / ``linear`` / ``none``.
        teacher_cache: cache teacher embeddings per (image, flip).
        teacher_cache_file: share the cache through this file (loaded if it matches, saved at the end).
    """

    teacher: Any = None
    teacher_network: str | None = None
    distill_weight: float = 1.0
    margin_weight: float = 0.0
    distill_loss: str = "l2"
    projection: str = "auto"
    teacher_cache: bool = True
    teacher_cache_file: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "DistillSettings":
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown distillation setting(s) {unknown}; known: {sorted(names)}")
        out = cls(**data)
        if out.distill_weight < 0 or out.margin_weight < 0 or out.distill_weight + out.margin_weight <= 0:
            raise ConfigError(f"distill_weight={out.distill_weight} and margin_weight={out.margin_weight} must be >= 0 "
                              "and not both 0")
        if out.distill_weight > 0 and not out.teacher:
            raise ConfigError("distill_weight > 0 needs a teacher (a checkpoint / .onnx path or a spec dict)")
        return out


class DistillationHead(nn.Module):
    """The engine's ``head``: ``(embeddings, labels) -> loss`` with the teacher's features of the
    batch read from the :class:`BatchHolder` the loader filled.

    Args:
        holder: the current batch (images, indices, flipped).
        teacher: teacher features (not a sub-module: the teacher is frozen and stays out of the
            head's state dict and optimiser), or None.
        distill: the distillation loss (holds the projection, if any), or None.
        margin: a PartialFC-like margin head, or None.
        distill_weight / margin_weight: the loss weights.
    """

    def __init__(self, holder: BatchHolder, teacher: TeacherFeatures | None, distill: DistillationLoss | None,
                 margin: nn.Module | None, distill_weight: float = 1.0, margin_weight: float = 0.0):
        super().__init__()
        self.holder = holder
        self.teacher = teacher
        self.distill = distill
        self.margin = margin
        self.distill_weight = float(distill_weight)
        self.margin_weight = float(margin_weight)
        self.last: dict[str, float] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = embeddings.new_zeros(())
        if self.distill is not None and self.distill_weight > 0:
            h = self.holder
            if h.images is None or h.images.shape[0] != embeddings.shape[0]:
                raise RuntimeError("DistillationHead got a batch its loader did not record; train it with the "
                                   "DistillLoader built by train_student")
            feats = self.teacher(h.images, h.indices, h.flipped).to(embeddings.device)
            d = self.distill(embeddings, feats)
            self.last["distill_loss"] = float(d.detach())
            loss = loss + self.distill_weight * d
        if self.margin is not None and self.margin_weight > 0:
            m = self.margin(embeddings, labels)
            self.last["margin_loss"] = float(m.detach())
            loss = loss + self.margin_weight * m
        return loss


@dataclasses.dataclass
class StudentResult:
    metrics: dict[str, Any]
    output: str
    model: nn.Module = dataclasses.field(repr=False)


def build_student(arch: Any, embedding_size: int) -> nn.Module:
    """The student network of an architecture description (dict / JSON path), freshly initialised."""
    from facenas.adapters.insightface.backbones import get_model

    return get_model(arch, num_features=int(embedding_size))


def train_student(cfg: Any, arch: Any, settings: DistillSettings, reporter: Reporter | None = None) -> StudentResult:
    """Train the architecture ``arch`` from scratch with ``cfg`` (a :class:`TrainConfig`) by FKD.

    The initial weights (student and projection), the data order and the flips follow ``cfg.seed``
    (:class:`EpochBatchSampler`), so runs with the same seed see the same batches whatever their
    loss, and train the same network; ``cfg.resume`` continues a run.
    Returns the engine's final metrics plus ``mflops``, ``params_m`` and teacher-cache counts.
    """
    from facenas.plugins.engine import build_head, train
    from facenas.nas.flops import count_flops, count_params
    from facenas.utils.seed import seed_everything

    cfg.validate("tnas student training config")
    size = cfg.input_size()
    # the student and the projection are initialised here, before the engine seeds its run: seed them from the
    # config too, so the same config trains the same network whatever the process drew before
    seed_everything(cfg.seed)
    model = build_student(arch, cfg.embedding_size)
    model_size = tuple(getattr(model, "input_size", (size, size)))
    if model_size != (size, size):
        raise ConfigError(f"the architecture's input size {list(model_size)} differs from the training image size {size}; "
                          f"set image_size={model_size[0]} (the space's input_size)")
    dataset = KeyedFaceDataset(cfg.rec, image_size=size)
    sampler = EpochBatchSampler(list(range(len(dataset))), cfg.batch_size, seed=cfg.seed)
    holder = BatchHolder()
    loader = DistillLoader(keyed_loader(dataset, sampler, cfg.num_workers), holder)

    teacher_features = distill = None
    out = Path(cfg.output)
    if settings.distill_weight > 0:
        teacher = load_teacher(settings.teacher, settings.teacher_network)
        ident = cache_identity(settings.teacher, describe_data(cfg.rec, size), size, len(dataset))
        teacher_features = TeacherFeatures(teacher, len(dataset), settings.teacher_cache, ident)
        cache_file = Path(settings.teacher_cache_file) if settings.teacher_cache_file else out / "teacher_cache.pt"
        if settings.teacher_cache:
            teacher_features.load(cache_file)
        tdim = teacher_features.embedding_size((3, size, size))
        distill = DistillationLoss(cfg.embedding_size, tdim, settings.projection, settings.distill_loss)
    margin = None
    if settings.margin_weight > 0:
        num_classes = cfg.num_classes or dataset.num_classes
        if not num_classes:
            raise ConfigError(f"margin_weight > 0 needs num_classes (the data at {cfg.rec!r} does not say)")
        margin = build_head(cfg, num_classes)
    head = DistillationHead(holder, teacher_features, distill, margin, settings.distill_weight, settings.margin_weight)
    result = train(cfg, model=model, reporter=reporter, train_loader=loader, head=head, report_final=False)
    if teacher_features is not None and settings.teacher_cache:
        teacher_features.save(cache_file)
    trained = result.model.cpu()
    final = dict(result.metrics)
    final["mflops"] = count_flops(trained, (1, 3, size, size)) / 1e6
    final["params_m"] = count_params(trained) / 1e6
    final["output"] = result.output
    if teacher_features is not None:
        final["teacher_images_computed"] = teacher_features.computed
        final["teacher_cache_hits"] = teacher_features.hits
    for k, v in head.last.items():
        final[f"last_{k}"] = v
    return StudentResult(final, result.output, trained)


def uniform_description(space_config: Mapping[str, Any], ratio: float) -> dict[str, Any]:
    """The architecture description of the uniformly narrowed student (every width at ``ratio``)."""
    from facenas.plugins.tnas.space import TnasSpace

    space = TnasSpace(**dict(space_config))
    return space.describe(space.uniform(ratio))


def resolve_arch(arch: Any) -> Any:
    """An architecture given as a dict, a JSON path, or a search output folder (its ``arch.json``)."""
    if isinstance(arch, (str, os.PathLike)) and os.path.isdir(arch):
        # a search's own output folder, or the folder a tnas.search stage reported to (its search/)
        for path in (Path(arch) / "arch.json", Path(arch) / "search" / "arch.json"):
            if path.is_file():
                return str(path)
        raise ConfigError(f"{arch} holds no arch.json (nor search/arch.json); give a TNAS search output folder or an "
                          "architecture JSON")
    return arch
