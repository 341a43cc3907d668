"""Searched networks in arcface_torch's ``get_model`` contract: another input size, and ``fp16``.

A search at the CPU scale runs at 32 or 64 px; arcface_torch's ``train_v2.py`` feeds 112x112
faces. What a search chose -- depths, widths, kernels, operations -- does not depend on the input
size; only the head that reads the last feature map does (TNAS / IResNet and ENAS: an FC layer
over the flattened map; OFA's GDC: a depthwise kernel the size of the map). Rebuilding the space
at the new size re-derives that head, so :func:`at_input_size` is the same architecture at
another resolution with freshly initialised weights (what ``train_v2`` trains from). Its FLOPs
and latency are those of the new size, not the ones the search measured.

``fp16``: arcface_torch's backbones run their body under CUDA autocast and their final FC /
feature BN in float32 on the body's output cast back to float. :func:`enable_fp16` gives a
searched network the same behaviour without changing its modules (state-dict keys stay those of
the float network): facenas IResNet-family networks (TNAS) already do it through their ``fp16``
attribute; OFA and ENAS networks get their forward wrapped (body in autocast) and their ``head``
run in float32. On CPU tensors autocast is off, as in arcface_torch.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from facenas.errors import ConfigError

log = logging.getLogger(__name__)


def _size_like(old: Any, size: Any) -> Any:
    """``size`` (an int or ``(h, w)``) in the form the space config used (int or list)."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if isinstance(old, (list, tuple)):
        return [h, w]
    if h != w:
        raise ConfigError(f"input_size {size} is not square; this space takes one integer size")
    return h


def at_input_size(desc: dict[str, Any], size: Any) -> dict[str, Any]:
    """A copy of architecture description ``desc`` whose space is configured for input ``size``."""
    cfg = desc["space_config"]
    if "input_size" not in cfg:
        raise ConfigError(f"space '{desc['space']}' has no input_size in its config: its networks cannot be "
                          "built at another input size")
    out = copy.deepcopy(desc)
    out["space_config"]["input_size"] = _size_like(cfg["input_size"], size)
    return out


def check_builds_at(model: nn.Module, desc: dict[str, Any], searched_size: Any) -> None:
    """A forward pass at the description's input size; a failure names the space, both sizes and why."""
    size = desc["space_config"]["input_size"]
    h, w = (size, size) if isinstance(size, int) else size
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, int(h), int(w)))
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"the '{desc['space']}' architecture searched at input {searched_size} cannot run at "
                          f"input {size}: {exc}") from None
    finally:
        model.train(was_training)


class _AutocastForward:
    """A network's forward under CUDA autocast (fp16), its output in float32."""

    def __init__(self, forward):
        self.forward = forward

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not x.is_cuda:
            return self.forward(x, *args, **kwargs)
        with torch.autocast("cuda", dtype=torch.float16):
            out = self.forward(x, *args, **kwargs)
        return out.float()


class _FloatForward:
    """A head's forward in float32 on a float32 input, even inside an autocast region."""

    def __init__(self, forward):
        self.forward = forward

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.forward(x.float(), *args, **kwargs)


def enable_fp16(model: nn.Module) -> nn.Module:
    """Make ``model`` run as arcface_torch's backbones do with ``fp16=True`` (see the module doc)."""
    if hasattr(model, "fp16"):  # facenas IResNet / MobileFaceNet family: their forward reads it
        model.fp16 = True
        return model
    head = getattr(model, "head", None)
    if head is None and isinstance(model, nn.Sequential) and len(model) > 0:
        head = model[-1]
    if not isinstance(head, nn.Module):
        raise ConfigError(f"fp16=True: {type(model).__name__} has no 'head' module to keep in float32; "
                          "build it with fp16=False")
    head.forward = _FloatForward(head.forward)
    model.forward = _AutocastForward(model.forward)
    model.fp16 = True
    return model
