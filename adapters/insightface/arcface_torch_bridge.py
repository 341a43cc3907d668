"""Use a user's own arcface_torch checkout in place of facenas's components.

When ``TrainConfig.arcface_torch`` (or the environment variable ``FACENAS_ARCFACE_TORCH``)
names a checkout of ``deepinsight/insightface/recognition/arcface_torch`` (the folder holding
``losses.py``, ``partial_fc_v2.py``, ``backbones/`` and ``eval/verification.py``), the trainer
takes the components listed in ``TrainConfig.arcface_torch_components`` from it:

* ``backbones`` -- its ``backbones.get_model(network, dropout=0.0, fp16=..., num_features=...)``;
* ``losses`` -- its ``losses.CombinedMarginLoss(64, *margin_list, interclass_filtering_threshold)``
  (with ``margin_scale`` as ``s``);
* ``partial_fc`` -- its ``partial_fc_v2.PartialFC_V2`` (needs CUDA and a process group: the
  trainer creates a one-process group when run without ``torchrun``);
* ``verification`` -- its ``eval/verification.calculate_roc`` (10-fold accuracy over the
  thresholds ``arange(0, 4, 0.01)``, exactly what its ``evaluate`` reports as accuracy); facenas
  computes the embeddings with flip, as its ``verification.test`` does. ``evaluate`` itself is
  not called: its VAL@FAR part (``calculate_val``) calls ``scipy.interpolate.interp1d`` on FAR
  values with duplicates, which SciPy >= 1.9 rejects (InsightFace #2152) ("Expect x to not have duplicates").
  The module imports ``mxnet`` at the top only for ``load_bin``; when mxnet is not installed it
  is imported with a stand-in ``mxnet`` module that raises if anything touches it.

The checkout's modules are imported under a private package name (``_facenas_arcface_torch``)
so they never clash with facenas's or other top-level modules; nothing from the checkout is
copied into facenas.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any, Mapping

from facenas.errors import ConfigError

log = logging.getLogger(__name__)

ENV_VAR = "FACENAS_ARCFACE_TORCH"
_PACKAGE = "_facenas_arcface_torch"
_REQUIRED = ("losses.py", "partial_fc_v2.py", "backbones/__init__.py")


class _Unavailable:
    """Stands for an mxnet name; using it (call or attribute) raises a clear error."""

    def __init__(self, name: str):
        self._name = name

    def _fail(self) -> ConfigError:
        return ConfigError(f"arcface_torch's verification used {self._name}, but mxnet is not installed; "
                           "facenas only calls its numpy `evaluate` function")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._fail()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self._fail()


class _MxnetStandIn(types.ModuleType):
    """Placeholder for ``mxnet`` while importing arcface_torch's ``eval/verification.py``."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unavailable(f"mxnet.{name}")


class ArcfaceTorchBridge:
    """Components loaded from an arcface_torch checkout.

    Args:
        root: the ``recognition/arcface_torch`` folder of the checkout.
        components: which components to use (``backbones``, ``losses``, ``partial_fc``,
            ``verification``).
    """

    def __init__(self, root: str | os.PathLike, components: list[str] | tuple[str, ...] = ("backbones", "losses",
                                                                                           "partial_fc",
                                                                                           "verification")):
        self.root = Path(root).expanduser().resolve()
        missing = [f for f in _REQUIRED if not (self.root / f).is_file()]
        if missing:
            raise ConfigError(f"arcface_torch checkout {self.root} lacks {missing}; point arcface_torch (or "
                              f"${ENV_VAR}) at the recognition/arcface_torch folder of deepinsight/insightface")
        self.components = tuple(components)
        self._package()

    def uses(self, component: str) -> bool:
        return component in self.components

    def _package(self) -> types.ModuleType:
        pkg = sys.modules.get(_PACKAGE)
        if pkg is None or list(getattr(pkg, "__path__", [])) != [str(self.root)]:
            for name in [m for m in sys.modules if m == _PACKAGE or m.startswith(_PACKAGE + ".")]:
                del sys.modules[name]
            pkg = types.ModuleType(_PACKAGE)
            pkg.__path__ = [str(self.root)]  # type: ignore[attr-defined]
            sys.modules[_PACKAGE] = pkg
        return pkg

    def module(self, name: str) -> types.ModuleType:
        """Import ``<checkout>/<name>.py`` (or package) under the private package name."""
        self._package()
        return importlib.import_module(f"{_PACKAGE}.{name}")

    # -- components ---------------------------------------------------------------------------
    def get_model(self, name: str, **kwargs: Any):
        """arcface_torch's ``backbones.get_model``; the module keeps facenas's rebuild spec.

        arcface_torch's r/mbf backbones have the same parameter names as facenas's, so the
        checkpoints facenas writes load into either.
        """
        model = self.module("backbones").get_model(name, **kwargs)
        spec_kwargs = {k: v for k, v in kwargs.items() if k not in ("fp16",)}
        from facenas.adapters.insightface.backbones import BACKBONES

        if name in BACKBONES:
            model.facenas_network = {"name": name, "kwargs": spec_kwargs}
        return model

    def margin_loss(self, s: float, margin_list: Any, interclass_filtering_threshold: float = 0.0):
        m1, m2, m3 = (float(v) for v in margin_list)
        return self.module("losses").CombinedMarginLoss(s, m1, m2, m3, interclass_filtering_threshold)

    def partial_fc(self, margin_loss: Any, embedding_size: int, num_classes: int, sample_rate: float, fp16: bool):
        import torch
        from torch import distributed as dist

        if not torch.cuda.is_available():
            raise ConfigError("arcface_torch's PartialFC_V2 runs only on CUDA; on a CPU drop 'partial_fc' from "
                              "arcface_torch_components (facenas's PartialFC is used then)")
        if not dist.is_initialized():
            log.info("creating a one-process NCCL group for arcface_torch's PartialFC_V2")
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", "12584")
            dist.init_process_group("nccl", rank=0, world_size=1)
        return self.module("partial_fc_v2").PartialFC_V2(margin_loss, embedding_size, num_classes, sample_rate, fp16)

    def verification_module(self) -> types.ModuleType:
        try:
            import mxnet  # noqa: F401
        except ImportError:
            name = f"{_PACKAGE}.eval.verification"
            if name not in sys.modules:
                saved = sys.modules.get("mxnet")
                sys.modules["mxnet"] = _MxnetStandIn("mxnet")
                try:
                    return self.module("eval.verification")
                finally:
                    if saved is None:
                        sys.modules.pop("mxnet", None)
                    else:
                        sys.modules["mxnet"] = saved
        return self.module("eval.verification")

    def evaluator(self, bins: Mapping[str, str], cfg: Any):
        """A ``model -> metrics`` callable using arcface_torch's ``evaluate`` on facenas's embeddings."""
        return ArcfaceTorchVerification(self.verification_module(), dict(bins), int(cfg.val_batch_size),
                                        cfg.input_size())


class ArcfaceTorchVerification:
    """``<set>_acc`` / ``<set>_acc_std`` from arcface_torch's ``evaluate`` (10 folds, flip-summed embeddings)."""

    def __init__(self, verification: types.ModuleType, bins: dict[str, str], batch_size: int, image_size: int):
        self.verification = verification
        self.bins = bins
        self.batch_size = batch_size
        self.image_size = image_size
        self._cache: dict[str, Any] = {}

    def _load(self, name: str, path: str):
        if name not in self._cache:
            from facenas.adapters.insightface import binset

            self._cache[name] = binset.load_bin(path)
        return self._cache[name]

    def __call__(self, model) -> dict[str, float]:
        import numpy as np

        from facenas.adapters.insightface.evaluate import embed

        out: dict[str, float] = {}
        for name, path in self.bins.items():
            vs = self._load(name, path)
            # flip-summed, L2-normalised embeddings, as arcface_torch's verification.test computes them
            emb = embed(model, vs.images, self.batch_size, self.image_size, flip=True)
            _, _, accuracy = self.verification.calculate_roc(np.arange(0, 4, 0.01), emb[0::2], emb[1::2],
                                                             vs.issame, nrof_folds=10)
            out[f"{name}_acc"] = float(np.mean(accuracy))
            out[f"{name}_acc_std"] = float(np.std(accuracy))
        return out


def bridge_from_config(cfg: Any) -> ArcfaceTorchBridge | None:
    """The bridge a config asks for (``cfg.arcface_torch`` or ``$FACENAS_ARCFACE_TORCH``), or None."""
    root = getattr(cfg, "arcface_torch", None) or os.environ.get(ENV_VAR)
    if not root:
        return None
    bridge = ArcfaceTorchBridge(root, tuple(getattr(cfg, "arcface_torch_components", ())))
    log.info("using arcface_torch components %s from %s", list(bridge.components), bridge.root)
    return bridge
