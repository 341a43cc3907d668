"""Algorithm 2 of Zhu 2019: retrain a searched architecture from scratch and test it.

The paper retrains each of the top three architectures from random initialisation with the
child network's settings and reports test accuracy; here the training engine
(:func:`facenas.plugins.engine.train`) retrains with the training recipe it is given -- at CPU
scale the shared protocol (``recipes/configs/celeba299_enas_retrain_cpu.py``, ``benchmarks/PROTOCOL.md``:
celeba299 at 64 x 64, ArcFace, SGD, 20 epochs, 60-minute cap) --, verifies on ``lfw_devtest.bin`` during training and tests on ``lfw.bin``
at the end. :func:`retrain_arch` adds the paper's table columns: parameters, MFLOPs, latency, and the
architecture (``arch``, saved as ``arch.json``: ``arch_path``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

from facenas.errors import ConfigError
from facenas.nas.report import Reporter
from facenas.nas.results import ARCH, arch_entry
from facenas.nas.space import create_space, load_description

log = logging.getLogger(__name__)


def retrain_arch(arch: Mapping[str, Any] | str | os.PathLike, out_dir: str | Path, reporter: Reporter | None = None,
                 config: Mapping[str, Any] | str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
                 latency: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train ``arch`` (an architecture description or its JSON path) from scratch; return the metrics.

    Args:
        arch: the architecture (``facenas.arch/1``).
        out_dir: output folder (the engine writes into ``out_dir/train``).
        reporter: per-epoch and final metrics.
        config: a recipe path or a dict of ``TrainConfig`` fields (the CPU-scale protocol's:
            ``recipes/configs/celeba299_enas_retrain_cpu.py``).
        overrides: ``TrainConfig`` fields replacing the config's (``num_epoch``, ``max_minutes``...).
        latency: ``{"lut": path}`` / ``{"table": ...}`` to add the predicted ``latency_ms``.
    """
    from facenas.plugins.engine.stages import config_from_params
    from facenas.plugins.engine.trainer import train
    from facenas.nas.flops import count_flops, count_params

    from .latency import build_latency_model

    desc = load_description(arch if isinstance(arch, Mapping) else os.fspath(arch))
    space = create_space(desc["space"], **desc["space_config"])
    sample = space.validate(desc["sample"])
    if config is None:
        raise ConfigError("enas.retrain needs 'config': a training recipe path (the CPU-scale protocol's is "
                          "recipes/configs/celeba299_enas_retrain_cpu.py) or a dict of TrainConfig fields")
    params: dict[str, Any] = {"config": config if isinstance(config, Mapping) else os.fspath(config), "arch": desc,
                              **dict(overrides or {})}
    cfg = config_from_params(params, out_dir)
    size = cfg.input_size()
    if size != space.input_size[0]:
        raise ConfigError(f"the training config's input size {size} differs from the architecture's input_size "
                          f"{space.input_size[0]}; set image_size={space.input_size[0]} or search at {size}")
    result = train(cfg, reporter=reporter, report_final=False)
    model = result.model.cpu()
    final = dict(result.metrics)
    final["mflops"] = count_flops(model, (1, 3, size, size)) / 1e6
    final["params_m"] = count_params(model) / 1e6
    model_latency = build_latency_model(latency, space) if latency is not None else None
    if model_latency is not None:
        final["latency_ms"] = float(model_latency(sample))
    final["output"] = result.output
    final["train_seconds"] = result.train_seconds
    entry = arch_entry(desc, Path(out_dir) / ARCH)  # the trained network's architecture, as every stage's result
    final["arch"], final["arch_path"] = entry["arch"], entry["arch_path"]
    return final
