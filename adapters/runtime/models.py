"""Resolve what a user names as a model into a torch backbone and its native input size.

A deployment command takes a *model* as a facenas checkpoint (``facenas.model/1`` or a training
checkpoint), an architecture description (``facenas.arch/1`` JSON: weights are freshly
initialised, which is enough for latency), or a registered backbone name (``mbf``, ``r18``).
:class:`InputResize` prepends the data layer's antialiased bilinear resize as two fixed matrix
products, so a network trained at the 64x64 CPU-scale protocol deploys with InsightFace's
112x112 aligned-face input.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import torch
from torch import nn

from facenas.errors import ConfigError, FacenasError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadedModel:
    """A torch backbone with what deployment needs to know about it."""

    module: nn.Module
    input_size: tuple[int, int]
    source: str
    kind: str  # "checkpoint" | "description" | "name" | "module"
    trained: bool  # False when weights are freshly initialised (description / name)


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, (int, float)):
        return int(value), int(value)
    h, w = value
    return int(h), int(w)


def native_input_size(model: nn.Module, default: tuple[int, int] = (112, 112)) -> tuple[int, int]:
    """The input size a backbone was built for (checkpoint record, description, attribute)."""
    ckpt = getattr(model, "facenas_checkpoint", None)
    if isinstance(ckpt, dict) and ckpt.get("input_size"):
        return _size(ckpt["input_size"])
    spec = getattr(model, "facenas_network", None)
    if isinstance(spec, dict):
        if "arch" in spec and "input_size" in spec["arch"].get("space_config", {}):
            return _size(spec["arch"]["space_config"]["input_size"])
        if "input_size" in spec.get("kwargs", {}):
            return _size(spec["kwargs"]["input_size"])
    if hasattr(model, "input_size"):
        try:
            return _size(model.input_size)
        except (TypeError, ValueError):
            pass
    return default


def load_model(source: Any, network: str | None = None) -> LoadedModel:
    """A torch backbone in eval mode from a checkpoint, a description or a backbone name.

    Args:
        source: path to a checkpoint (``.pt``/``.pth``), an architecture description (dict,
            ``.json`` file or JSON text), a ``BACKBONES`` name, or an ``nn.Module``.
        network: the backbone name for an arcface_torch bare state dict.
    """
    from facenas.adapters.insightface.backbones import BACKBONES, get_model, is_description, load_backbone

    if isinstance(source, nn.Module):
        return LoadedModel(source.eval(), native_input_size(source), type(source).__name__, "module", True)
    if is_description(source):
        if isinstance(source, (str, os.PathLike)) and str(source).endswith(".json") and not os.path.isfile(source):
            raise FacenasError(f"architecture description {source} does not exist")
        model = get_model(source)
        text = json.dumps(source) if isinstance(source, dict) else os.fspath(source)
        return LoadedModel(model.eval(), native_input_size(model), text[:200], "description", False)
    text = os.fspath(source)
    if os.path.isfile(text):
        if text.endswith((".onnx", ".tflite")):
            raise ConfigError(f"{text} is already a {text.rsplit('.', 1)[1]} file; a torch model is needed here "
                              "(give a facenas checkpoint or an architecture description)")
        model = load_backbone(text, network)
        return LoadedModel(model, native_input_size(model), text, "checkpoint", True)
    if text in BACKBONES.names():
        model = get_model(text)
        return LoadedModel(model.eval(), native_input_size(model), text, "name", False)
    raise FacenasError(f"model '{text}' is not a file, an architecture description or a backbone name "
                       f"(known backbones: {', '.join(BACKBONES.names())})")


def resize_matrix(src: int, dst: int) -> torch.Tensor:
    """``(dst, src)`` matrix of the data layer's 1-D antialiased bilinear resize (exactly its weights).

    ``F.interpolate(..., mode="bilinear", antialias=True)`` is separable and linear, so resizing
    the ``src`` unit vectors gives its weights; applying them as ``A_h @ X @ A_w^T`` reproduces it.
    """
    # width 2 -> 2 leaves the second axis untouched (a width of 1 trips torch's antialias kernel)
    eye = torch.eye(src, dtype=torch.float64).reshape(src, 1, src, 1).expand(src, 1, src, 2).contiguous()
    out = torch.nn.functional.interpolate(eye, size=(dst, 2), mode="bilinear", align_corners=False, antialias=True)
    return out[..., 0].reshape(src, dst).t().float().contiguous()


class InputResize(nn.Module):
    """Resize ``(B, C, H, W)`` input to the backbone's native size before calling it.

    Args:
        model: the backbone.
        from_size: the deployed input size (InsightFace's 112x112).
        to_size: the backbone's native input size.
    """

    def __init__(self, model: nn.Module, from_size: tuple[int, int], to_size: tuple[int, int]):
        super().__init__()
        self.model = model
        self.register_buffer("rows", resize_matrix(from_size[0], to_size[0]))  # (h, H)
        self.register_buffer("cols_t", resize_matrix(from_size[1], to_size[1]).t().contiguous())  # (W, w)
        self.from_size, self.to_size = tuple(from_size), tuple(to_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # both products keep the constant on the right (activation @ weights: a FullyConnected
        # after export): TFLite's int8 BATCH_MATMUL with a constant left operand (rows @ x)
        # returns the zero point for every input, which made int8 exports map all faces to one
        # embedding
        x = torch.matmul(x, self.cols_t)  # (B, C, H, w)
        x = torch.matmul(x.transpose(2, 3), self.rows.t()).transpose(2, 3)  # (B, C, h, w)
        return self.model(x)


def deployable(model: nn.Module, input_size: tuple[int, int], native: tuple[int, int]) -> nn.Module:
    """``model`` itself when it runs at ``input_size``, else wrapped in :class:`InputResize`."""
    if tuple(input_size) == tuple(native):
        return model
    if input_size[0] < native[0] or input_size[1] < native[1]:
        raise ConfigError(f"export input {input_size} is smaller than the network's native input {native}; "
                          "export at the native size or larger")
    log.info("the network runs at %sx%s: the export resizes %sx%s faces first (antialiased bilinear, as the data layer)",
             *native, *input_size)
    return InputResize(model, input_size, native).eval()
