"""Evaluate a backbone on ``.bin`` verification sets, as InsightFace's ``CallBackVerification`` does.

:class:`VerificationEvaluator` loads the sets once and maps a model to named metrics
(``<set>_acc``, ``<set>_acc_std``, ``<set>_tar_at_far_1e-3``, ``<set>_auc``, ``<set>_eer``, ...).
The model is a ``torch.nn.Module`` or any callable from a float32 ``(B, 3, H, W)`` batch
normalised as ``(x/255 - 0.5)/0.5`` (RGB) to ``(B, D)`` embeddings (e.g. an ONNX session wrapper).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Mapping

import numpy as np

from facenas.adapters.insightface.binset import MIN_PAIRS, VerificationSet, load_bin
from facenas.errors import DataFormatError
from facenas.adapters.insightface.verification import evaluate, flip_embeddings
from facenas.errors import ConfigError

log = logging.getLogger(__name__)

Embedder = Callable[[np.ndarray], np.ndarray]


def preprocess(images: np.ndarray, image_size: int | tuple[int, int] | None = None):
    """uint8 ``(B, H, W, 3)`` RGB -> float32 torch ``(B, 3, h, w)`` normalised as InsightFace does.

    With ``image_size`` the batch is resized with antialiased bilinear interpolation, the same
    resize the data loaders apply (CPU-scale protocol).
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = x.div_(255.0).sub_(0.5).div_(0.5)
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if tuple(x.shape[-2:]) != size:
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x


def embed(model: Any, images: np.ndarray, batch_size: int = 64, image_size: int | tuple[int, int] | None = None,
          flip: bool = True, desc: str = "embedding") -> np.ndarray:
    """Embeddings of ``images`` (flip-test summed and normalised when ``flip``), float32.

    Logs progress (rate, ETA) every 10 s for long sets.
    """
    import torch

    from facenas.utils.progress import Progress

    progress = Progress(len(images), desc, unit="img", interval=10.0, logger=log)
    is_module = isinstance(model, torch.nn.Module)
    was_training = model.training if is_module else False
    if is_module:
        model.eval()
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    outs, outs_f = [], []
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                x = preprocess(images[i:i + batch_size], image_size)
                views = [x, torch.flip(x, dims=[3])] if flip else [x]
                for view, sink in zip(views, (outs, outs_f)):
                    if is_module:
                        y = model(view.to(device)).float().cpu().numpy()
                    else:
                        y = np.asarray(model(view.numpy()), dtype=np.float32)
                    sink.append(y)
                progress.update(len(x))
    finally:
        if is_module:
            model.train(was_training)
    emb = np.concatenate(outs)
    if flip:
        return flip_embeddings(emb, np.concatenate(outs_f))
    return flip_embeddings(emb, np.zeros_like(emb))


class VerificationEvaluator:
    """Evaluate models on named ``.bin`` sets.

    Args:
        bins: ``{name: path}`` (or a list of paths, named by file stem), or loaded sets.
        batch_size: images per forward pass.
        flip: flip-test (sum of the image's and its mirror's embeddings), as InsightFace.
        image_size: resize the 112x112 pairs to this size for networks trained on smaller input;
            ``None``: the model's ``input_size`` attribute when it has one (facenas backbones and
            ONNX wrappers do), else the pairs' own size.
    """

    def __init__(self, bins: Mapping[str, str | os.PathLike | VerificationSet] | list, batch_size: int = 64,
                 flip: bool = True, image_size: int | tuple[int, int] | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r}: expected a positive integer (images per forward pass), "
                              "e.g. --batch-size 64")
        if not isinstance(bins, Mapping):
            bins = {os.path.splitext(os.path.basename(os.fspath(p)))[0]: p for p in bins}
        self.sets: dict[str, VerificationSet] = {}
        for name, src in bins.items():
            t0 = time.perf_counter()
            self.sets[name] = src if isinstance(src, VerificationSet) else load_bin(src)
            if self.sets[name].num_pairs < MIN_PAIRS:
                raise DataFormatError(self.sets[name].path, f"holds {self.sets[name].num_pairs} pair(s); 10-fold "
                                                            f"verification needs at least {MIN_PAIRS}",
                                      "use a verification set with more pairs (LFW has 6000)")
            log.info("loaded %s: %d pairs in %.1f s", name, self.sets[name].num_pairs, time.perf_counter() - t0)
        self.batch_size = batch_size
        self.flip = flip
        self.image_size = image_size

    def input_size(self, model: Any) -> int | tuple[int, int] | None:
        """The size pairs are resized to for ``model`` (see ``image_size``)."""
        if self.image_size is not None:
            return self.image_size
        size = getattr(model, "input_size", None)
        if isinstance(size, int):
            return size
        if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) for v in size):
            return tuple(size)
        return None

    def evaluate_set(self, model: Any, name: str):
        vs = self.sets[name]
        emb = embed(model, vs.images, self.batch_size, self.input_size(model), self.flip, desc=f"embedding {name}")
        return evaluate(emb, vs.issame, source=f"{name} ({vs.path})")

    def __call__(self, model: Any) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in self.sets:
            t0 = time.perf_counter()
            result = self.evaluate_set(model, name)
            out.update(result.to_dict(prefix=name))
            log.info("%s: acc %.4f +- %.4f, TAR@FAR=1e-3 %.4f, AUC %.4f, EER %.4f (%.1f s)", name, result.accuracy,
                     result.accuracy_std, result.tar_at_far, result.auc, result.eer, time.perf_counter() - t0)
        return out
