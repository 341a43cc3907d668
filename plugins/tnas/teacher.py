"""The frozen teacher and the feature-distillation loss (TNAS Eqs. 2, 9, 10).

A teacher is anything the training engine loads (:func:`facenas.adapters.insightface.backbones.
load_backbone`): a facenas ``facenas.model/1`` file (e.g. ``best.pt`` of ``facenas train``), an
arcface_torch ``model.pt`` (with its network name), or an ``.onnx`` recognition model run by
onnxruntime (e.g. an InsightFace model-zoo ``w600k_*.onnx`` the user has on disk). For tests it
can also be a randomly initialised backbone (``{"random": "r18", "kwargs": {...}, "seed": 0}``).

:class:`TeacherFeatures` computes the teacher's embeddings of a batch once, without gradients, in
eval mode, resizing the batch to the teacher's input size if it differs, and can cache them per
(image index, flipped) key so each training image is seen by the teacher at most twice over a
whole run (``cache=True``); the cache can be saved and shared between runs on the same data.

**Embedding sizes.** The loss compares the student's embedding ``F_S`` with the teacher's
``F_T``. When their sizes differ, :class:`DistillationLoss` learns a linear map (no bias) from
the student's embedding to the teacher's size (a FitNets-style regressor, trained with the
student's weights, not part of the deployed student): ``H(W F_S, F_T)``. With equal sizes no
projection is used (``projection="auto"``).
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from facenas.errors import ConfigError, DataFormatError
from facenas.utils.io import atomic_torch_save

log = logging.getLogger(__name__)

DISTILL_LOSSES = ("l2", "mse")
PROJECTIONS = ("auto", "linear", "none")
CACHE_FORMAT = "facenas.tnas_teacher_cache/1"


def teacher_description(spec: Any) -> str:
    """A stable string naming the teacher (for logs and for the cache's identity)."""
    if isinstance(spec, Mapping):
        return ",".join(f"{k}={spec[k]}" for k in sorted(spec))
    return os.fspath(spec)


def load_teacher(spec: Any, network: Any = None) -> nn.Module:
    """A frozen teacher (eval mode, no gradients) from a checkpoint path or a spec dict.

    Args:
        spec: a path (facenas model file, arcface_torch ``model.pt``, ``.onnx``), or a dict
            ``{"path": ..., "network": ...}`` or ``{"random": <backbone name or arch
            description>, "kwargs": {...}, "seed": 0}`` (random features; tests only).
        network: the arcface_torch network name for a bare ``model.pt`` (e.g. ``"r50"``).
    """
    from facenas.adapters.insightface.backbones import get_model, load_backbone

    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "random" in spec:
            unknown = set(spec) - {"random", "kwargs", "seed"}
            if unknown:
                raise ConfigError(f"random teacher spec has unknown keys {sorted(unknown)}; use random/kwargs/seed")
            with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
                torch.manual_seed(int(spec.get("seed", 0)))
                model = get_model(spec["random"], **dict(spec.get("kwargs") or {}))
                calibrate_batch_norm(model)
        elif "path" in spec:
            unknown = set(spec) - {"path", "network"}
            if unknown:
                raise ConfigError(f"teacher spec has unknown keys {sorted(unknown)}; use path/network")
            model = load_backbone(spec["path"], network=spec.get("network", network))
        else:
            raise ConfigError(f"teacher spec {spec} needs 'path' (a checkpoint or .onnx) or 'random' (a network)")
    else:
        path = os.fspath(spec)
        if not os.path.isfile(path):
            raise DataFormatError(path, "teacher checkpoint not found",
                                  "give a facenas model file (best.pt), an arcface_torch model.pt with its network "
                                  "name, or an .onnx recognition model")
        model = load_backbone(path, network=network)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def calibrate_batch_norm(model: nn.Module, batches: int = 4, batch_size: int = 32) -> None:
    """Set a random network's BN running statistics from uniform [-1, 1] images (the range of
    normalised faces), so an untrained teacher gives features of unit scale rather than the
    exploding activations of identity statistics."""
    size = getattr(model, "input_size", (112, 112))
    size = (size, size) if isinstance(size, int) else tuple(size)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    for _ in range(batches):
        model(torch.rand(batch_size, 3, *size) * 2 - 1)
    for m in bns:
        m.momentum = 0.1
    model.eval()


def teacher_input_size(teacher: nn.Module) -> tuple[int, int] | None:
    size = getattr(teacher, "input_size", None)
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


class TeacherFeatures:
    """Frozen teacher embeddings of batches, optionally cached per ``(index, flipped)`` key.

    Args:
        teacher: the frozen teacher module.
        num_items: size of the dataset the keys index (needed for caching).
        cache: keep every computed embedding (``num_items x 2 x D`` floats).
        identity: a string naming teacher + data + input size; a saved cache loads only if equal.
    """

    def __init__(self, teacher: nn.Module, num_items: int | None = None, cache: bool = True, identity: str = ""):
        self.teacher = teacher
        self.input_size = teacher_input_size(teacher)
        self.num_items = num_items
        self.cache_enabled = bool(cache and num_items)
        self.identity = identity
        self.features: torch.Tensor | None = None
        self.filled: torch.Tensor | None = None
        self.computed = 0
        self.hits = 0
        self.dim: int | None = None

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        device = next((p.device for p in self.teacher.parameters()), x.device)
        with torch.no_grad():
            out = self.teacher(x.to(device)).float()
        self.computed += int(images.shape[0])
        return out.to(images.device)

    def embedding_size(self, image_shape: tuple[int, int, int]) -> int:
        """The teacher's embedding size (one forward pass on zeros the first time)."""
        if self.dim is None:
            self.dim = int(self._run(torch.zeros(1, *image_shape)).shape[-1])
            self.computed -= 1
        return self.dim

    def __call__(self, images: torch.Tensor, indices: torch.Tensor | None = None,
                 flipped: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, D)`` teacher embeddings of ``images``; cached by ``(indices, flipped)`` if enabled."""
        if not self.cache_enabled or indices is None or flipped is None:
            return self._run(images)
        idx = indices.long().cpu()
        flp = flipped.long().cpu()
        if self.features is None:
            first = self._run(images)
            self.dim = int(first.shape[1])
            self.features = torch.zeros(int(self.num_items), 2, self.dim)
            self.filled = torch.zeros(int(self.num_items), 2, dtype=torch.bool)
            self.features[idx, flp] = first.detach().cpu()
            self.filled[idx, flp] = True
            return first
        have = self.filled[idx, flp]
        missing = (~have).nonzero().flatten()
        if missing.numel():
            computed = self._run(images[missing.to(images.device)]).detach().cpu()
            self.features[idx[missing], flp[missing]] = computed
            self.filled[idx[missing], flp[missing]] = True
        self.hits += int(have.sum())
        return self.features[idx, flp].to(images.device)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"format": CACHE_FORMAT, "identity": self.identity, "num_items": self.num_items,
                "features": self.features, "filled": self.filled}

    def save(self, path: str | os.PathLike) -> None:
        if self.features is not None:
            atomic_torch_save(self.state_dict(), path)

    def load(self, path: str | os.PathLike) -> bool:
        """Load a saved cache if it was made by the same teacher on the same data; returns success."""
        if not self.cache_enabled or not Path(path).is_file():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping) or state.get("format") != CACHE_FORMAT:
            raise DataFormatError(os.fspath(path), f"not a teacher cache ({CACHE_FORMAT})", "delete it to recompute")
        if state.get("identity") != self.identity or state.get("num_items") != self.num_items:
            log.warning("teacher cache %s was made for another teacher/data (%s); ignoring it", path,
                        state.get("identity"))
            return False
        if state["features"] is not None:
            self.features, self.filled = state["features"], state["filled"]
            self.dim = int(self.features.shape[-1])
            log.info("teacher cache %s: %d of %d embeddings", path, int(self.filled.sum()), self.filled.numel())
        return True


def cache_identity(teacher_spec: Any, data: str, image_size: Any, num_items: int) -> str:
    """Identity string of a teacher cache: teacher (with the file's size and mtime), data, size."""
    desc = teacher_description(teacher_spec)
    path = teacher_spec.get("path") if isinstance(teacher_spec, Mapping) else teacher_spec
    if isinstance(path, (str, os.PathLike)) and os.path.isfile(path):
        st = os.stat(path)
        desc += f"|{st.st_size}|{int(st.st_mtime)}"
    digest = hashlib.sha1(desc.encode()).hexdigest()[:16]
    return f"teacher={digest}|data={data}|size={image_size}|n={num_items}"


class DistillationLoss(nn.Module):
    """Feature-distillation loss ``H(F_S, F_T)`` (Eq. 2) with an optional learned projection.

    Args:
        student_dim: student embedding size.
        teacher_dim: teacher embedding size.
        projection: ``auto`` (linear only if the sizes differ), ``linear`` or ``none``.
        kind: ``l2`` -- the batch mean of the Euclidean distance ``||F_S - F_T||_2`` (Eq. 2 as
            written) -- or ``mse`` -- the mean squared difference per dimension.
    """

    def __init__(self, student_dim: int, teacher_dim: int, projection: str = "auto", kind: str = "l2"):
        super().__init__()
        if projection not in PROJECTIONS:
            raise ConfigError(f"projection={projection!r} is not one of {list(PROJECTIONS)}")
        if kind not in DISTILL_LOSSES:
            raise ConfigError(f"distill_loss={kind!r} is not one of {list(DISTILL_LOSSES)}")
        if projection == "none" and student_dim != teacher_dim:
            raise ConfigError(f"student embedding ({student_dim}) and teacher embedding ({teacher_dim}) differ; set "
                              "projection='linear' (or 'auto') or make the student's embedding_size match")
        self.kind = kind
        use = projection == "linear" or (projection == "auto" and student_dim != teacher_dim)
        self.projection = nn.Linear(student_dim, teacher_dim, bias=False) if use else None

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        s = self.projection(student) if self.projection is not None else student
        diff = s.float() - teacher.float().detach()
        if self.kind == "mse":
            return diff.pow(2).mean()
        return diff.pow(2).sum(dim=1).add(1e-12).sqrt().mean()
