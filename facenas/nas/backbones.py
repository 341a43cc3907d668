"""The backbone registry and ``get_model``: a network by arcface_torch name or from a description.

``get_model(name, **kwargs)`` has arcface_torch's signature (``backbones/__init__.py``): names
``r18 r34 r50 r100 r200 mbf mbf_large`` plus ``airface`` (registered in ``BACKBONES`` by
:mod:`facenas.adapters.insightface.backbones`, imported by name on the first lookup), kwargs
``num_features``, ``fp16``, ``dropout`` and the factories' extensions (``width_mult``,
``input_size``, ...). It also accepts a facenas architecture description (``facenas.arch/1``: a
dict, a JSON file or JSON text), rebuilt through the search space that wrote it.
"""
from __future__ import annotations

import copy
import inspect
import json
import logging
import os
from typing import TYPE_CHECKING, Any, Mapping

from facenas.errors import ConfigError
from facenas.nas.space import build_from_description, load_description
from facenas.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

log = logging.getLogger(__name__)

#: Backbone factories by arcface_torch network name; ``BACKBONES.create(name, **kwargs)``.
BACKBONES: Registry = Registry("backbone", modules=["facenas.adapters.insightface.backbones"])


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
            warning (searched networks have no dropout layer); ``space_config`` (a dict) rebuilds
            the architecture in its space with those options changed (e.g. an OFA pick with
            ``stage_se`` all false: the same depths, kernels and expand ratios without SE).

    The returned module carries ``facenas_network`` (how to rebuild it), which
    :func:`~facenas.adapters.insightface.backbones.save_backbone` stores in ``facenas.model/1`` checkpoints.
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
    desc = copy.deepcopy(load_description(source))
    extra = {k: v for k, v in kwargs.items()
             if k not in ("num_features", "fp16", "dropout", "input_size", "space_config")}
    if extra:
        raise ConfigError(f"an architecture description takes only num_features/fp16/dropout/input_size/"
                          f"space_config, not {sorted(extra)}")
    override = kwargs.get("space_config")
    if override is not None:
        if not isinstance(override, Mapping) or "input_size" in override or "embedding_size" in override:
            raise ConfigError(f"network_kwargs space_config={override!r} must be a dict of the space's options "
                              f"(input_size and embedding_size have their own keys: input_size, num_features)")
        desc["space_config"] = {**desc["space_config"], **copy.deepcopy(dict(override))}
    searched_size = desc["space_config"].get("input_size")
    if kwargs.get("input_size") is not None:
        from facenas.nas.searched import at_input_size

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
        from facenas.nas.searched import check_builds_at

        check_builds_at(model, desc, searched_size)
        log.info("architecture %s searched at input %s built at %s (its head re-sized, fresh weights)", desc["space"],
                 searched_size, desc["space_config"]["input_size"])
    if kwargs.get("fp16"):
        from facenas.nas.searched import enable_fp16

        enable_fp16(model)
    model.facenas_network = {"arch": json.loads(json.dumps(desc))}
    return model
