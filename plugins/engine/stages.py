"""Stage ``engine.train``: train or retrain a network / architecture description in a trial.

Parameters (JSON, through NNI): ``config`` -- a recipe path or a dict of :class:`TrainConfig`
fields -- plus any top-level ``TrainConfig`` field as an override, and optionally ``arch`` (an
architecture description dict or JSON path, which becomes ``network``). The output folder is
``reporter.out_dir / "train"`` unless the config names one. Per-epoch metrics go to
``reporter.intermediate`` and the final ones (verification accuracies, ``mflops``,
``params_m``, ``default`` = the first val/test accuracy) to ``reporter.final``.

Example::

    run_stage_locally("engine.train", {"config": "recipes/configs/celeba299_mbf_cpu.py",
                                       "arch": "runs/enas/best_arch.json", "num_epoch": 2}, "out/")
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

from facenas.errors import ConfigError
from facenas.nas.report import Reporter
from facenas.nas.stages import STAGES, checks_params, continue_requeued_trial


def config_from_params(params: Mapping[str, Any], out_dir: str | os.PathLike | None = None):
    """The :class:`TrainConfig` a stage's parameters describe (output defaults to ``out_dir/train``)."""
    from facenas.config import load_config_module
    from facenas.plugins.engine.config import TrainConfig

    params = dict(params)
    base = params.pop("config", None)
    arch = params.pop("arch", None)
    if arch is not None:
        if isinstance(arch, Mapping):
            if out_dir is None:
                raise ConfigError("an 'arch' dict needs an output folder to be written to")
            os.makedirs(out_dir, exist_ok=True)
            path = os.path.join(out_dir, "arch.json")
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(dict(arch), fh, indent=2)
            arch = path
        params["network"] = str(arch)
        params.setdefault("network_kwargs", {})
    if base is None:
        data: dict[str, Any] = params
    elif isinstance(base, Mapping):
        data = {**dict(base), **params}
    else:
        data = {**load_config_module(str(base), TrainConfig).to_dict(), **params}
    cfg = TrainConfig.from_dict(data, source="engine.train parameters")
    if not cfg.output and out_dir is not None:
        cfg.output = os.path.join(os.fspath(out_dir), "train")
    if cfg.output:
        continue_requeued_trial(cfg, params, cfg.output)
    return cfg


def check_train_params(params: dict[str, Any], scratch: str) -> Any:
    """The TrainConfig ``engine.train`` would build from ``params`` (dry run)."""
    return config_from_params({k: v for k, v in params.items() if k != "nproc_per_node"}, scratch)


@STAGES.register("engine.train")
@checks_params(check_train_params)
def engine_train(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Train the configured network; report per-epoch intermediate and the final metrics."""
    from facenas.plugins.engine.trainer import train
    from facenas.nas.flops import count_flops, count_params

    from facenas.plugins.engine.launcher import run_torchrun, wants_torchrun

    nproc = wants_torchrun(params)
    cfg = config_from_params({k: v for k, v in params.items() if k != "nproc_per_node"}, reporter.out_dir)
    if nproc is not None:  # DDP in nproc processes (one per GPU), launched from this trial
        final = run_torchrun(["train"], cfg.to_dict(), cfg.output, nproc, reporter)
        final["output"] = cfg.output
        if os.path.isfile(os.path.join(cfg.output, "last.pt")):
            from facenas.adapters.insightface.backbones import load_backbone

            model = load_backbone(os.path.join(cfg.output, "last.pt"))
            size = cfg.input_size()
            final["mflops"] = count_flops(model, (1, 3, size, size)) / 1e6
            final["params_m"] = count_params(model) / 1e6
        return final
    result = train(cfg, reporter=reporter, report_final=False)
    model = result.model.cpu()
    size = cfg.input_size()
    final = dict(result.metrics)
    final["mflops"] = count_flops(model, (1, 3, size, size)) / 1e6
    final["params_m"] = count_params(model) / 1e6
    final["output"] = result.output
    return final
