"""Backbone checkpoint files: facenas ``facenas.model/1``, arcface_torch ``model.pt``, ONNX.

``facenas.model/1`` is a ``torch.save`` dict::

    {"format": "facenas.model/1",
     "network": {"name": "r50", "kwargs": {...}}  or  {"arch": <facenas.arch/1 description>},
     "state_dict": {...}, "embedding_size": 512, "input_size": [112, 112], "meta": {...}}

It loads with ``torch.load(..., weights_only=True)`` (plain containers and tensors only), so a
checkpoint from an untrusted source cannot run code. arcface_torch's ``model.pt`` is a bare
backbone ``state_dict``; loading it needs the network name (``--network r50``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from facenas.errors import ConfigError, DataFormatError, FacenasError
from facenas.engine.checkpoint import TRAIN_FORMAT, read_model_file
from facenas.utils.io import atomic_torch_save

log = logging.getLogger(__name__)

#: Format tag of facenas backbone checkpoints.
MODEL_FORMAT = "facenas.model/1"

_LIST_LIMIT = 12


class CheckpointMismatchError(FacenasError):
    """A state dict does not fit the model: missing, unexpected or differently shaped entries."""

    def __init__(self, source: str, missing: list[str], unexpected: list[str],
                 shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]], hint: str = ""):
        self.missing, self.unexpected, self.shape_mismatch = missing, unexpected, shape_mismatch

        def listing(items: list[str]) -> str:
            more = f" ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
            return ", ".join(items[:_LIST_LIMIT]) + more

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {listing(unexpected)}")
        if shape_mismatch:
            parts.append(f"{len(shape_mismatch)} shape mismatch(es): "
                         + listing([f"{k} checkpoint {list(a)} vs model {list(b)}" for k, a, b in shape_mismatch]))
        msg = f"{source}: the checkpoint does not fit the model ({'; '.join(parts)})"
        msg += f"; {hint}" if hint else "; it was saved from a different architecture -- check the network name and kwargs"
        super().__init__(msg)


def _strip_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, Any], source: str = "checkpoint",
                            hint: str = "") -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with an error listing every mismatch."""
    state_dict = _strip_prefix(state_dict)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items()
              if k in own and isinstance(v, torch.Tensor) and isinstance(own[k], torch.Tensor) and v.shape != own[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(source, missing, unexpected, shapes, hint)
    model.load_state_dict(state_dict, strict=True)


def network_spec(model: nn.Module) -> dict[str, Any]:
    """How to rebuild ``model``: ``{"name", "kwargs"}`` or ``{"arch": description}``."""
    spec = getattr(model, "facenas_network", None)
    if spec is None:
        raise ConfigError(
            f"{type(model).__name__} was not built by facenas get_model / build_from_description, so its checkpoint "
            "could not be rebuilt; build it with facenas.adapters.insightface.backbones.get_model")
    return spec


def _infer_embedding_size(model: nn.Module, input_size: tuple[int, int]) -> int:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
            out = model(torch.zeros(1, 3, *input_size, device=device))
    finally:
        model.train(was_training)
    return int(out.shape[-1])


def save_backbone(model: nn.Module, path: str | os.PathLike, meta: Mapping[str, Any] | None = None,
                  network: Mapping[str, Any] | None = None, embedding_size: int | None = None,
                  input_size: tuple[int, int] | None = None) -> Path:
    """Write ``model`` as a ``facenas.model/1`` file atomically; returns the path."""
    model = getattr(model, "module", model)  # unwrap DDP
    spec = dict(network) if network is not None else network_spec(model)
    if input_size is None:
        input_size = tuple(getattr(model, "input_size", (112, 112)))  # type: ignore[assignment]
    if embedding_size is None:
        embedding_size = _infer_embedding_size(model, input_size)  # type: ignore[arg-type]
    record = {
        "format": MODEL_FORMAT,
        "network": spec,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "embedding_size": int(embedding_size),
        "input_size": [int(v) for v in input_size],  # type: ignore[union-attr]
        "meta": dict(meta or {}),
    }
    atomic_torch_save(record, path)
    return Path(path)


def _build(spec: Mapping[str, Any], source: str, overrides: Mapping[str, Any] | None = None) -> nn.Module:
    from . import get_model

    if "arch" in spec:
        return get_model(spec["arch"], **dict(overrides or {}))
    if "name" in spec:
        kwargs = dict(spec.get("kwargs") or {})
        kwargs.update(overrides or {})
        return get_model(spec["name"], **kwargs)
    raise DataFormatError(source, f"network spec {dict(spec)} has neither 'name' nor 'arch'")


def _guess_num_features(state_dict: Mapping[str, Any]) -> int | None:
    for key in ("features.weight", "features.layers.3.weight", "features.running_mean"):
        v = state_dict.get(key)
        if isinstance(v, torch.Tensor) and v.dim() == 1:
            return int(v.numel())
    return None


def load_backbone(path: str | os.PathLike, network: Any = None, **kwargs: Any) -> nn.Module:
    """Load a backbone for inference (returned in eval mode).

    Args:
        path: a ``facenas.model/1`` file, a facenas training checkpoint (``checkpoint*.pt``), an
            arcface_torch ``model.pt`` (bare state dict), or an ``.onnx`` file (returns a frozen
            :class:`~facenas.adapters.insightface.onnx_backbone.OnnxBackbone`, CPU, no gradients).
        network: for a bare state dict, the arcface_torch network name (``"r50"``) or an
            architecture description; ignored (must agree) for facenas files.
        kwargs: factory kwargs for a bare state dict (``num_features`` is inferred if absent).
    """
    source = os.fspath(path)
    if source.endswith(".onnx"):
        from ..onnx_backbone import OnnxBackbone

        return OnnxBackbone(source)
    obj = read_model_file(source)
    if isinstance(obj, Mapping) and obj.get("format") in (MODEL_FORMAT, TRAIN_FORMAT):
        spec = obj["network"]
        state = obj["state_dict"] if obj["format"] == MODEL_FORMAT else obj["backbone"]
        if network is not None and "name" in spec and isinstance(network, str) and network != spec["name"]:
            raise ConfigError(f"{source} holds network '{spec['name']}', but network='{network}' was given")
        model = _build(spec, source)
        load_state_dict_checked(model, state, source)
        model.facenas_checkpoint = {k: v for k, v in obj.items() if k not in ("state_dict", "backbone", "head",
                                                                               "optimizer", "rng")}
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if network is None:
            from . import BACKBONES

            raise ConfigError(f"{source} is a bare state dict (arcface_torch model.pt); name its network, "
                              f"e.g. --network r50 (known: {', '.join(BACKBONES.names())})")
        state = _strip_prefix(obj)
        if "num_features" not in kwargs and not (isinstance(network, Mapping) or str(network).endswith(".json")):
            nf = _guess_num_features(state)
            if nf is not None:
                kwargs["num_features"] = nf
        from . import get_model

        model = get_model(network, **kwargs)
        load_state_dict_checked(model, state, source,
                                hint=f"it is not an arcface_torch '{network}' with {kwargs or 'default kwargs'}")
    else:
        raise DataFormatError(source, f"not a facenas model file ({MODEL_FORMAT}) nor a state dict "
                                      f"(found a {type(obj).__name__})")
    model.eval()
    return model
