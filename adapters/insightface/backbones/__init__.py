"""Reference backbones, the ``BACKBONES`` registry and arcface_torch's ``get_model``.

``get_model(name, **kwargs)`` has arcface_torch's signature (``backbones/__init__.py``): names
``r18 r34 r50 r100 r200 mbf mbf_large`` plus ``airface``, kwargs ``num_features``, ``fp16``,
``dropout`` and our extensions (``width_mult``, ``input_size``, ...). It also accepts a facenas
architecture description (``facenas.arch/1``: a dict, a JSON file or JSON text), so arcface_torch's
``train_v2.py`` can train a searched backbone after its ``get_model`` import is changed and, for a
network searched below 112 px, ``input_size=112`` is added to the call (train_v2 needs CUDA,
NCCL and mxnet besides: see docs/training.md)::

    from facenas.adapters.insightface.backbones import get_model
    backbone = get_model("runs/enas/best_arch.json", dropout=0.0, fp16=cfg.fp16, num_features=512, input_size=112)

Checkpoints: :func:`load_backbone` reads facenas ``facenas.model/1`` files, arcface_torch
``model.pt`` state dicts (with the network name) and ONNX files (a frozen teacher);
:func:`save_backbone` writes ``facenas.model/1``.
"""
from __future__ import annotations

import copy
import inspect
import json
import logging
import os
from typing import Any, Callable, Mapping

from torch import nn

from facenas.errors import ConfigError
from facenas.registry import Registry

from .checkpoint import (
    MODEL_FORMAT,
    CheckpointMismatchError,
    load_backbone,
    load_state_dict_checked,
    network_spec,
    read_model_file,
    save_backbone,
)

log = logging.getLogger(__name__)

#: Backbone factories by arcface_torch network name; ``BACKBONES.create(name, **kwargs)``.
BACKBONES: Registry = Registry("backbone")

__all__ = [
    "BACKBONES", "MODEL_FORMAT", "CheckpointMismatchError", "get_model", "load_backbone", "load_state_dict_checked",
    "network_spec", "read_model_file", "save_backbone", "is_description",
]


def _iresnet_factory(depth: str) -> Callable[..., nn.Module]:
    def factory(num_features: int = 512, fp16: bool = False, dropout: float = 0.0, width_mult: float = 1.0,
                input_size: int = 112, zero_init_residual: bool = False) -> nn.Module:
        from .iresnet import iresnet

        return iresnet(depth, num_features=num_features, fp16=fp16, dropout=dropout, width_mult=width_mult,
                       input_size=input_size, zero_init_residual=zero_init_residual)

    factory.__name__ = depth
    factory.__doc__ = f"IResNet {depth} (arcface_torch ``{depth}``); ``width_mult`` < 1 gives a narrowed IResNet."
    return factory


for _depth in ("r18", "r34", "r50", "r100", "r200"):
    BACKBONES.register(_depth)(_iresnet_factory(_depth))


def _no_dropout(name: str, dropout: float) -> None:
    if dropout:
        raise ConfigError(f"backbone '{name}' has no dropout layer; set dropout=0.0")


@BACKBONES.register("mbf")
def mbf(num_features: int = 512, fp16: bool = False, dropout: float = 0.0, blocks: tuple = (1, 4, 6, 2),
        scale: int = 2, width_mult: float = 1.0, input_size: int = 112, act: str = "prelu") -> nn.Module:
    """MobileFaceNet (arcface_torch ``mbf``); ``act="relu"``: ReLU in place of PReLU."""
    from .mobilefacenet import MobileFaceNet

    _no_dropout("mbf", dropout)
    return MobileFaceNet(fp16, num_features, tuple(blocks), scale, width_mult=width_mult, input_size=input_size,
                         act=act)


@BACKBONES.register("mbf_large")
def mbf_large(num_features: int = 512, fp16: bool = False, dropout: float = 0.0, blocks: tuple = (2, 8, 12, 4),
              scale: int = 4, width_mult: float = 1.0, input_size: int = 112, act: str = "prelu") -> nn.Module:
    """Large MobileFaceNet (arcface_torch ``mbf_large``); ``act="relu"``: ReLU in place of PReLU."""
    _no_dropout("mbf_large", dropout)
    return mbf(num_features, fp16, 0.0, blocks, scale, width_mult, input_size, act)


@BACKBONES.register("airface")
def airface(num_features: int = 512, fp16: bool = False, dropout: float = 0.0, width_mult: float = 1.0,
            depth_mult: float = 1.0, input_size: int = 112, head_channels: int = 1024, reduction: int = 16) -> nn.Module:
    """AirFace backbone (deeper MobileFaceNet + CBAM with 1+tanh gates, AirFace Table 1)."""
    from .airface import AirFaceNet

    return AirFaceNet(num_features, width_mult, depth_mult, input_size, head_channels, reduction, fp16, dropout)


def is_description(name: Any) -> bool:
    """Whether ``name`` is (or points to) a facenas architecture description rather than a name."""
    if isinstance(name, Mapping):
        return True
    if not isinstance(name, (str, os.PathLike)):
        return False
    text = os.fspath(name)
    return text.lstrip().startswith("{") or text.endswith(".json")


def get_model(name: Any, **kwargs: Any) -> nn.Module:
    """A backbone by arcface_torch network name, or from a facenas architecture description.

    Args:
        name: a ``BACKBONES`` name (``"r50"``, ``"mbf"``...) or an architecture description
            (dict / path to JSON / JSON text, format ``facenas.arch/1``).
        kwargs: the factory's keyword arguments (``num_features``, ``fp16``, ``dropout``, ...).
            For a description, ``num_features`` sets the space's ``embedding_size``,
            ``input_size`` rebuilds the space at that size (its head re-sized; an architecture
            that cannot run there fails naming why), ``fp16`` runs the body under CUDA autocast
            and the head in float32 as arcface_torch's backbones do; ``dropout`` is ignored with a
            warning (searched networks have no dropout layer).

    The returned module carries ``facenas_network`` (how to rebuild it), which
    :func:`save_backbone` stores in ``facenas.model/1`` checkpoints.
    """
    if is_description(name):
        return _from_description(name, kwargs)
    factory = BACKBONES.get(str(name))
    params = inspect.signature(factory).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ConfigError(f"backbone '{name}' does not take {unknown}; it takes {list(params)}")
    model = factory(**kwargs)
    spec_kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items() if k != "fp16"}
    model.facenas_network = {"name": str(name), "kwargs": spec_kwargs}
    return model


def _from_description(source: Any, kwargs: Mapping[str, Any]) -> nn.Module:
    from facenas.plugins.space import build_from_description, load_description

    desc = copy.deepcopy(load_description(source))
    extra = {k: v for k, v in kwargs.items() if k not in ("num_features", "fp16", "dropout", "input_size")}
    if extra:
        raise ConfigError(f"an architecture description takes only num_features/fp16/dropout/input_size, "
                          f"not {sorted(extra)}")
    searched_size = desc["space_config"].get("input_size")
    if kwargs.get("input_size") is not None:
        from .searched import at_input_size

        desc = at_input_size(desc, kwargs["input_size"])
    if kwargs.get("dropout"):
        log.warning("dropout=%s ignored for a searched architecture (it has no dropout layer)", kwargs["dropout"])
    nf = kwargs.get("num_features")
    if nf is not None:
        cfg = desc["space_config"]
        if "embedding_size" in cfg and int(cfg["embedding_size"]) != int(nf):
            log.info("architecture %s: embedding_size %s -> num_features %s", desc["space"], cfg["embedding_size"], nf)
            cfg["embedding_size"] = int(nf)
        elif "embedding_size" not in cfg:
            raise ConfigError(f"space '{desc['space']}' has no embedding_size in its config; cannot set num_features={nf}")
    model = build_from_description(desc)
    if desc["space_config"].get("input_size") != searched_size:
        from .searched import check_builds_at

        check_builds_at(model, desc, searched_size)
        log.info("architecture %s searched at input %s built at %s (its head re-sized, fresh weights)", desc["space"],
                 searched_size, desc["space_config"]["input_size"])
    if kwargs.get("fp16"):
        from .searched import enable_fp16

        enable_fp16(model)
    model.facenas_network = {"arch": json.loads(json.dumps(desc))}
    return model
