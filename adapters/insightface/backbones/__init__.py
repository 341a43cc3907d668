"""Reference backbones registered in ``BACKBONES``, and arcface_torch's ``get_model``.

``get_model(name, **kwargs)`` has arcface_torch's signature (``backbones/__init__.py``): names
``r18 r34 r50 r100 r200 mbf mbf_large`` plus ``airface``, kwargs ``num_features``, ``fp16``,
``dropout`` and our extensions (``width_mult``, ``input_size``, ...). It also accepts a facenas
architecture description (``facenas.arch/1``: a dict, a JSON file or JSON text), so arcface_torch's
``train_v2.py`` can train a searched backbone after its ``get_model`` import is changed and, for a
network searched below 112 px, ``input_size=112`` is added to the call (train_v2 needs CUDA,
NCCL and mxnet besides: see docs/training.md). ``BACKBONES`` and ``get_model`` are defined in
core (:mod:`facenas.nas.backbones`) and re-exported here::

    from facenas.adapters.insightface.backbones import get_model
    backbone = get_model("runs/enas/best_arch.json", dropout=0.0, fp16=cfg.fp16, num_features=512, input_size=112)

Checkpoints: :func:`load_backbone` reads facenas ``facenas.model/1`` files, arcface_torch
``model.pt`` state dicts (with the network name) and ONNX files (a frozen teacher);
:func:`save_backbone` writes ``facenas.model/1``.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from facenas.errors import ConfigError
# the registry and get_model live in core; re-exported here, where arcface_torch has its get_model
from facenas.nas.backbones import BACKBONES, get_model, is_description

from .checkpoint import (
    MODEL_FORMAT,
    CheckpointMismatchError,
    load_backbone,
    load_state_dict_checked,
    network_spec,
    read_model_file,
    save_backbone,
)

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
