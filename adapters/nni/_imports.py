"""Lazy, order-safe imports of NNI (only adapters import ``nni``).

Two NNI 3.0 facts, measured here, shape this module:

- ``import nni.nas.strategy`` must come before ``nni.nas.oneshot...``, or the one-shot strategies
  silently become placeholders. :func:`nas` imports the strategies first, always.
- ``import nni.nas.nn.pytorch`` takes ~12 s here (it pulls in PyTorch Lightning) and warns about
  torch classes it does not know (``torch.nn.parameter.Buffer`` ...). Those warnings say nothing
  about our code, so they are silenced; the import happens only where a NAS object is built.
"""
from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from facenas.errors import MissingDependencyError

_INSTALL = 'pip install "nni==3.0" "setuptools<81" pytorch-lightning torchmetrics'


def nni() -> ModuleType:
    """The ``nni`` package (trial / tuner API), imported on first use."""
    try:
        return importlib.import_module("nni")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("nni", "running facenas through NNI", _INSTALL) from exc


def nas() -> ModuleType:
    """``nni.nas`` with strategies imported first and the PyTorch model-space API loaded."""
    nni()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"nni\.nas\.nn\.pytorch.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            importlib.import_module("nni.nas.strategy")  # before anything under nni.nas.oneshot
            importlib.import_module("nni.nas.nn.pytorch")
            importlib.import_module("nni.nas.experiment")
            importlib.import_module("nni.nas.evaluator")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(getattr(exc, "name", None) or "nni", "NNI model spaces and NasExperiment", _INSTALL) from exc
    return importlib.import_module("nni.nas")
