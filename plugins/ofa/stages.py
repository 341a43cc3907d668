"""Trial stages of the OFA + comparator method (``STAGES``), run locally or as NNI trials.

``ofa.train_supernet``
    Progressive-shrinking supernet training (:mod:`.train`) as one trial, per-epoch intermediate
    results; ``config``: a dict of :class:`~.train.SupernetTrainConfig` fields (or a recipe path)
    plus overrides. Final: the phases' metrics, ``checkpoint`` (``supernet.pt``) and ``head``
    (``head.pt``: the trained margin head, for ``ofa.finetune``).
``ofa.evaluate``
    One subnet of a trained supernet (``supernet``: its ``supernet.pt``; ``sample``: the subnet),
    BN recalibrated on ``calibration_images`` training images of ``rec``, verified on ``val``
    (``.bin`` paths; ``flip``). ``default`` = ``target`` (e.g. ``lfw_devtest_auc``); also MFLOPs,
    params. Used for the accuracy set (a ``sample`` step) and for the final architectures: with
    ``export`` the subnet is saved (``checkpoint``) and timed (``latency_ms``; ``latency``: see
    :func:`~facenas.plugins.runtime_stages.network_latency_ms`, default on with ``export``).
    ``device`` (``"cpu"``, the default; ``"cuda"``, ``"cuda:N"``, ``"auto"``): where the subnet is
    recalibrated and verified (the supernet is read onto the CPU and only the extracted subnet moves;
    the exported weights and the latency are the CPU's).
``ofa.finetune``
    A chosen subnet (``supernet`` + ``sample``) trained further as a static network with the
    training engine's recipe (``config``), starting from the supernet's weights and, with
    ``head``, its trained margin head (the ``head`` result of ``ofa.train_supernet``).
``ofa.search``
    Fits the LightGBM comparator (or OFA's MLP predictor, ``ranker: mlp``) on ``candidates``
    (``${evaluate[*]}``: the accuracy set's trial records) and runs Algorithm 1 (QuickSelect
    evolution) under ``bound`` on ``cost`` (``mflops``, or ``{"lut": table.json}`` for latency: the
    table's predicted milliseconds, :class:`~facenas.adapters.runtime.latency_model.LatencyModel`,
    so ``bound`` can be a measured latency, e.g. a reference network's ``runtime.latency``).
    Final: ``architectures`` (top-k samples) for ``ofa.evaluate`` trials, and the search time.
    It runs no network (the ranker sees architecture encodings), so it has no ``device``.
"""
from __future__ import annotations

import os
import time
from typing import Any, Mapping

from facenas.errors import ConfigError, FacenasError
from facenas.nas.report import Reporter
from facenas.nas.stages import STAGES, auxiliary_stage, checks_params


def _check_train_supernet(params: dict[str, Any], scratch: str) -> Any:
    from facenas.nas.stages import config_fields_from_params

    from .train import SupernetTrainConfig

    data = config_fields_from_params({k: v for k, v in params.items() if k != "nproc_per_node"}, SupernetTrainConfig)
    cfg = SupernetTrainConfig.from_dict(data, source="ofa.train_supernet parameters")
    cfg.build_space()
    return cfg


@STAGES.register("ofa.train_supernet")
@auxiliary_stage
@checks_params(_check_train_supernet)
def ofa_train_supernet(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Train a face supernet by progressive shrinking; returns its ``checkpoint`` (``supernet.pt``)."""
    from facenas.nas.stages import config_fields_from_params, continue_requeued_trial

    from .train import SupernetTrainConfig, save_supernet, train_supernet

    from facenas.plugins.engine.launcher import run_torchrun, wants_torchrun

    nproc = wants_torchrun(params)
    data = config_fields_from_params({k: v for k, v in params.items() if k != "nproc_per_node"}, SupernetTrainConfig)
    # the trial's folder unless the stage names another: a recipe file's default output is the CLI's
    # (relative to the working directory), and trials of one pipeline must not share it
    if data.get("output") in (None, SupernetTrainConfig.output):
        data["output"] = os.path.join(os.fspath(reporter.out_dir), "supernet")
    cfg = SupernetTrainConfig.from_dict(data, source="ofa.train_supernet parameters")
    continue_requeued_trial(cfg, params, cfg.output)
    if nproc is not None:  # DDP in nproc processes (one per GPU), launched from this trial
        done = run_torchrun(["ofa", "train"], cfg.to_dict(), cfg.output, nproc, reporter)
        final = {k: v for k, v in done.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        final["checkpoint"] = os.path.join(cfg.output, "supernet.pt")
        final.setdefault("default", float(final.get("largest_" + next(iter(cfg.val_targets), "") + "_acc", 0.0))
                         if cfg.val_targets else 0.0)
        return final
    res = train_supernet(cfg, reporter=reporter)
    path = os.path.join(res.output, "supernet.pt")
    save_supernet(path, res.space, res.supernet)
    final = {k: v for k, v in res.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    final.update({"checkpoint": path, "train_seconds": float(res.train_seconds), "global_step": float(res.global_step)})
    head = save_head(res.output)
    if head is not None:
        final["head"] = head
    final.setdefault("default", float(final.get("largest_" + next(iter(cfg.val_targets), "") + "_acc", 0.0))
                     if cfg.val_targets else 0.0)
    return final


def save_head(output: str) -> str | None:
    """The supernet's trained ArcFace head (class centres) as ``head.pt`` beside it, for ``ofa.finetune``;
    None when the training state holds no head (a sharded PartialFC under DDP)."""
    import torch

    from facenas.utils.io import atomic_torch_save

    state_file = os.path.join(output, "checkpoint.pt")
    if not os.path.isfile(state_file):
        return None
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    # the margin head's state: under "head" (or a key ending in it), holding the class centres ("weight")
    heads = [v for k, v in (state.items() if isinstance(state, dict) else ())
             if str(k).split(".")[-1].endswith("head") and isinstance(v, dict) and "weight" in v]
    if not heads:
        return None
    path = os.path.join(output, "head.pt")
    atomic_torch_save({"head": heads[0]}, path)
    return path


def _val_sets(val: Any) -> dict[str, str]:
    from pathlib import Path

    paths = [val] if isinstance(val, str) else list(val or [])
    if not paths:
        raise ConfigError("ofa.evaluate needs 'val': one or more verification .bin paths")
    return {Path(p).stem: str(p) for p in paths}


def _check_evaluate(params: dict[str, Any], scratch: str) -> Any:
    from facenas.engine.distributed import check_device

    return check_device(params.get("device", "cpu"))


@STAGES.register("ofa.evaluate")
@checks_params(_check_evaluate)
def ofa_evaluate(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Verify one subnet of a trained supernet (BN recalibrated); ``default`` = the ``target`` metric."""
    import torch

    from facenas.adapters.insightface.evaluate import VerificationEvaluator
    from facenas.engine import distributed
    from facenas.nas.flops import count_params

    from .calibrate import load_calibration_images, recalibrate_bn
    from .train import load_supernet

    for key in ("supernet", "sample", "rec"):
        if key not in params:
            raise ConfigError(f"ofa.evaluate needs '{key}'; got {sorted(params)}")
    device = distributed.resolve_device(params.get("device", "cpu"))  # before anything is read: a wrong device fails at once
    if device.type != "cpu":
        import logging

        logging.getLogger(__name__).info("ofa.evaluate: subnet on %s", device)
    space, supernet = load_supernet(params["supernet"])
    sample = space.canonical(space.validate(params["sample"]))
    size = space.input_size[0]
    images = load_calibration_images(str(params["rec"]), int(params.get("calibration_images", 256)), size,
                                     seed=int(params.get("seed", 0)))
    supernet.set_active(space.arch(sample))
    # only the extracted subnet goes to the device; recalibration and verification feed it there
    subnet = recalibrate_bn(supernet.get_active_subnet().to(device), images).eval()
    bins = _val_sets(params.get("val"))
    ev = VerificationEvaluator(bins, batch_size=int(params.get("batch_size", 200)), flip=bool(params.get("flip", True)),
                               image_size=(size, size))
    with torch.no_grad():
        metrics = {k: float(v) for k, v in ev(subnet).items()}
    subnet = subnet.cpu()  # exported and timed on the CPU
    target = params.get("target") or f"{next(iter(bins))}_acc"
    if target not in metrics:
        raise ConfigError(f"ofa.evaluate: target '{target}' is not one of {sorted(metrics)}")
    final = {**metrics, "default": metrics[target], "mflops": space.flops(sample) / 1e6,
             "params_m": count_params(subnet) / 1e6}
    if params.get("export"):
        from facenas.utils.io import atomic_torch_save

        path = os.path.join(os.fspath(reporter.out_dir), "model.pt")
        atomic_torch_save({"format": "facenas.model/1", "network": {"arch": space.describe(sample)},
                           "state_dict": subnet.state_dict(), "embedding_size": space.embedding_size, "input_size": [size, size],
                           "meta": {"stage": "ofa.evaluate"}}, path)
        final["checkpoint"] = path
    from facenas.plugins.runtime_stages import network_latency_ms

    if not hasattr(subnet, "input_size"):
        subnet.input_size = (size, size)  # timed at the size it was verified at
    lat = network_latency_ms(subnet, params.get("latency", bool(params.get("export"))))
    if lat is not None:
        final["latency_ms"] = lat
    return final


def _finetune_config(params: Mapping[str, Any], out_dir: Any):
    """The engine's TrainConfig of an ``ofa.finetune`` step (``config`` + overrides; ``network``: the subnet)."""
    from facenas.plugins.engine.stages import config_from_params

    train_params = {k: v for k, v in params.items() if k not in _FINETUNE_EXTRA}
    train_params.setdefault("network", "ofa_subnet")  # the model is given: the name only labels the run
    return config_from_params(train_params, out_dir)


#: ``ofa.finetune`` parameters that are not TrainConfig fields
_FINETUNE_EXTRA = ("supernet", "sample", "head", "calibration_images", "latency", "seed_calibration")


def _check_finetune(params: dict[str, Any], scratch: str) -> Any:
    for key in ("supernet", "sample", "config"):
        if key not in params:
            raise ConfigError(f"ofa.finetune needs '{key}'; got {sorted(params)}")
    return _finetune_config(params, scratch)


@STAGES.register("ofa.finetune")
@checks_params(_check_finetune)
def ofa_finetune(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Fine-tune a chosen subnet as a static network with the training engine, from the supernet's weights.

    ``supernet`` (``supernet.pt``) and ``sample`` give the subnet; its weights are the supernet's
    (BN recalibrated on ``calibration_images`` training images); ``head`` (optional: the
    ``head.pt`` of ``ofa.train_supernet``) starts the margin head from the supernet's trained class
    centres, else it starts fresh. ``config`` (a recipe path or dict of TrainConfig fields, e.g. the
    protocol's ``recipes/configs/celeba299_mbf_cpu.py``) and any TrainConfig field as an override
    give the training, which :func:`~facenas.plugins.engine.trainer.train` runs (val and test sets,
    checkpoints, resume: as ``engine.train``). Final: the engine's metrics (``lfw_acc`` ... from
    ``test_targets``), ``mflops``, ``params_m``, ``output``, ``arch`` and ``latency_ms``
    (``latency``, as ``ofa.evaluate``'s; default on).
    """
    import torch

    from facenas.engine.distributed import resolve_device
    from facenas.nas.flops import count_flops, count_params
    from facenas.plugins.engine.trainer import build_head, train
    from facenas.plugins.runtime_stages import network_latency_ms

    from .calibrate import load_calibration_images, recalibrate_bn
    from .train import load_supernet

    for key in ("supernet", "sample", "config"):
        if key not in params:
            raise ConfigError(f"ofa.finetune needs '{key}'; got {sorted(params)}")
    cfg = _finetune_config(params, reporter.out_dir)
    space, supernet = load_supernet(params["supernet"])
    sample = space.canonical(space.validate(params["sample"]))
    size = space.input_size[0]
    if cfg.input_size() != size or cfg.embedding_size != space.embedding_size:
        raise ConfigError(f"ofa.finetune: the training config's image_size {cfg.input_size()} / embedding_size "
                          f"{cfg.embedding_size} differ from the supernet's {size} / {space.embedding_size}; set "
                          f"image_size: {size} and embedding_size: {space.embedding_size}")
    images = load_calibration_images(cfg.rec, int(params.get("calibration_images", 256)), size,
                                     seed=int(params.get("seed_calibration", 0)))
    supernet.set_active(space.arch(sample))
    # recalibrated on the device it trains on (the engine's resolution of the config's device)
    subnet = recalibrate_bn(supernet.get_active_subnet().to(resolve_device(cfg.device)), images).train()
    desc = space.describe(sample)
    subnet.facenas_network = {"arch": desc}  # how checkpoints (last.pt, best.pt) rebuild it
    head = None
    if params.get("head"):
        state = torch.load(str(params["head"]), map_location="cpu", weights_only=True)
        weight = state.get("head", {}).get("weight") if isinstance(state, dict) else None
        if weight is None:
            raise ConfigError(f"ofa.finetune: {params['head']} is not a head file of ofa.train_supernet (no head weight)")
        classes = int(weight.shape[0])  # the supernet's identities: the head's class centres
        if cfg.num_classes and cfg.num_classes != classes:
            raise ConfigError(f"ofa.finetune: num_classes={cfg.num_classes}, but the head {params['head']} has {classes} "
                              f"class centres; train on the supernet's data with num_classes={classes} (or drop 'head')")
        head = build_head(cfg, classes)
        head.load_state_dict(state["head"])
    result = train(cfg, model=subnet, head=head, reporter=reporter, report_final=False)
    model = result.model.cpu().eval()
    final = dict(result.metrics)
    final["mflops"] = count_flops(model, (1, 3, size, size)) / 1e6
    final["params_m"] = count_params(model) / 1e6
    final.update(output=result.output, arch=desc, train_seconds=float(result.train_seconds),
                 supernet_mflops=space.flops(sample) / 1e6)
    if not hasattr(model, "input_size"):
        model.input_size = (size, size)
    lat = network_latency_ms(model, params.get("latency", True))
    if lat is not None:
        final["latency_ms"] = lat
    return final


def _bound_scale(params: Mapping[str, Any]) -> float:
    """``bound_scale`` (default 1): a positive number, else one line naming the value and the fix."""
    scale = params.get("bound_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ConfigError(f"ofa.search bound_scale: {scale!r} is not a positive number; give e.g. 0.7 (search under "
                          "0.7x the bound, such as 0.7x a reference's measured latency)")
    return float(scale)


def _check_search(params: Mapping[str, Any], scratch: str) -> float:
    """The search's required parameters and its ``bound_scale`` (returned)."""
    if "supernet" not in params or "bound" not in params:
        raise ConfigError(f"ofa.search needs 'supernet' and 'bound'; got {sorted(params)}")
    return _bound_scale(params)


@STAGES.register("ofa.search")
@auxiliary_stage
@checks_params(_check_search)
def ofa_search(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Fit the ranker on the evaluated candidates and run Algorithm 1 under ``bound`` x ``bound_scale`` (default 1;
    e.g. 0.7 under 0.7x a reference's measured latency); top-k architectures."""
    import numpy as np

    from .costs import AdditiveCost
    from .predictors import Comparator, ComparatorConfig, MLPPredictor
    from .search import EvolutionConfig, evolution_search, make_ranker
    from .train import load_supernet

    scale = _check_search(params, reporter.out_dir)
    bound = float(params["bound"]) * scale
    space, _ = load_supernet(params["supernet"])
    samples, scores = [], []
    for cand in params.get("candidates") or []:
        sample = (cand.get("arch") or {}).get("sample") or (cand.get("params") or {}).get("sample")
        default = (cand.get("metrics") or {}).get("default")
        if sample is None or default is None:
            raise FacenasError(f"ofa.search: a candidate record has no sample or no metrics.default: {sorted(cand)}")
        samples.append(space.canonical(space.validate(sample)))
        scores.append(float(default))
    if len(samples) < 4:
        raise FacenasError(f"ofa.search needs at least 4 evaluated candidates to fit a ranker, got {len(samples)}")
    enc = np.stack([space.encode(s) for s in samples]).astype(np.float32)
    acc = np.asarray(scores)
    kind = str(params.get("ranker", "comparator"))
    t0 = time.monotonic()
    if kind == "mlp":
        predictor: Any = MLPPredictor.fit(enc, acc)
    else:
        predictor = Comparator.fit(enc, acc, ComparatorConfig(num_pairs=min(20_000, len(acc) * (len(acc) - 1))))
    fit_s = time.monotonic() - t0
    cost_spec = params.get("cost", "mflops")
    if cost_spec == "mflops":
        cost = AdditiveCost.flops(space)
    elif isinstance(cost_spec, Mapping) and set(cost_spec) == {"lut"}:
        from facenas.adapters.runtime.latency_model import LatencyModel

        cost = AdditiveCost.latency(space, LatencyModel.load(cost_spec["lut"], space))
    else:
        raise ConfigError(f"ofa.search: cost must be 'mflops' or {{'lut': path}}, got {cost_spec!r}")
    evo = EvolutionConfig.from_dict(dict(params.get("evolution") or {}), source="ofa.search evolution")
    res = evolution_search(space, make_ranker(kind, space, predictor), cost, bound, evo, ranker_name=kind)
    from facenas.nas.results import ranked_result

    reporter.intermediate({"default": float(len(samples)), "candidates": float(len(samples))})
    metrics = {"default": -float(res.best_cost), "best_cost": float(res.best_cost), "bound": bound,
               "bound_given": float(params["bound"]), "bound_scale": scale,
               "search_seconds": float(res.seconds), "fit_seconds": float(fit_s),
               "comparator_calls": float(res.comparator_calls), "candidates": float(len(samples)), "ranker": kind}
    return ranked_result(metrics, reporter.out_dir, [(space.describe(t["sample"]), {"cost": t["cost"], "score": t["score"]})
                                                     for t in res.top])
