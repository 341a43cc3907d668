"""Trial stages of TNAS (``STAGES``), run locally or as NNI trials.

``tnas.search``
    The search (Algorithm 1) as one trial: per-epoch intermediate metrics ``arch_entropy``,
    ``expected_mflops``, ``argmax_mflops``, ``distill_loss``, ``val_distill_loss``,
    ``cost_loss`` (``default`` = minus the validation distillation loss); final metrics describe
    the derived architecture (``mflops``, ``target_mflops``, ``within_tolerance``; ``per_epoch`` =
    how the architecture distribution converged, one entry per epoch: ``arch_entropy``,
    ``expected_mflops``, ``argmax_mflops``, ``argmax_final`` ...; ``arch`` = its
    ``facenas.arch/1`` description, ``arch_path`` = its ``arch.json``, which a pipeline passes on as
    ``${search.result.arch_path}``). Parameters: ``config`` (a recipe path or a dict of
    :class:`~facenas.plugins.tnas.search.TnasSearchConfig` fields) plus any field as an override.
    Output: ``<out_dir>/search`` unless ``output`` is set.

``tnas.train``
    Train an architecture from scratch by feature distillation through the training engine.
    Parameters: ``config`` (a :class:`~facenas.plugins.engine.TrainConfig` recipe path or dict)
    plus TrainConfig overrides; ``arch`` (a description dict, an ``arch.json`` path, or a
    ``tnas.search`` output folder) *or* ``uniform_ratio`` + ``space`` (the uniformly narrowed
    student); ``distill``: :class:`~facenas.plugins.tnas.distill.DistillSettings` fields
    (``teacher``, ``distill_weight``, ``margin_weight``, ...); ``sample`` (optional, with
    ``arch``: its sample, checked against it -- a pipeline passes it so that the portal shows
    the architecture's choices as columns); ``latency`` (see
    :func:`~facenas.plugins.runtime_stages.network_latency_ms`). A recipe file may assign ``arch``,
    ``space`` and ``distill`` beside ``config``: they are the defaults of those parameters
    (``uniform_ratio`` given, the recipe's ``arch`` is not used). Reports per-epoch training
    metrics and the final verification accuracies, ``mflops``, ``params_m``, ``latency_ms``
    (onnxruntime, 1 thread, batch 1) and ``arch`` (the trained architecture's description).

Both run from the command line through ``facenas search tnas [--stage train] RECIPE``.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from facenas.errors import ConfigError
from facenas.nas.report import Reporter
from facenas.nas.stages import STAGES, auxiliary_stage, checks_params
from facenas.plugins.runtime_stages import network_latency_ms


def _description(network: Any) -> dict[str, Any] | None:
    """The architecture description a TrainConfig ``network`` names (a JSON file), or None."""
    import json

    if not isinstance(network, str) or not network.endswith(".json") or not os.path.isfile(network):
        return None
    with open(network, encoding="utf-8") as fh:
        data = json.load(fh)
    return data if isinstance(data, dict) and "sample" in data else None


def _check_search(params: dict[str, Any], scratch: str) -> Any:
    import json

    from facenas.adapters.nni.check import PLACEHOLDER
    from facenas.plugins.tnas.search import load_search_config

    base = params.pop("config", None)
    cfg = load_search_config(base if base is not None else {}, params)
    if isinstance(cfg.space, Mapping) and PLACEHOLDER not in json.dumps(cfg.space, default=str):
        _check_target(cfg)  # a space known before the run (not an earlier step's result)
    return cfg


def _check_target(cfg: Any) -> None:
    """The space builds and the FLOPs target is a uniform width candidate inside its range (as the search checks)."""
    from facenas.plugins.tnas.search import resolve_target
    from facenas.plugins.tnas.space import TnasSpace

    try:
        space = TnasSpace(**cfg.space)
    except TypeError as exc:
        raise ConfigError(f"tnas search: space={cfg.space} is not a valid TnasSpace config ({exc})") from None
    target = resolve_target(space, cfg)
    low, high = space.flops(space.smallest()), space.flops(space.largest())
    if not low <= target <= high:
        raise ConfigError(f"tnas search: target {target / 1e6:.2f} MFLOPs is outside the space's range "
                          f"[{low / 1e6:.2f}, {high / 1e6:.2f}] MFLOPs; change target_mflops/target_width_ratio")


@STAGES.register("tnas.search")
@auxiliary_stage
@checks_params(_check_search)
def tnas_search(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Run a TNAS search; the derived architecture is ``<output>/arch.json``."""
    from facenas.plugins.tnas.search import load_search_config, run_search

    params = dict(params)
    base = params.pop("config", None)
    cfg = load_search_config(base if base is not None else {}, params)
    if not cfg.output:
        cfg.output = os.path.join(os.fspath(reporter.out_dir), "search")
    result = run_search(cfg, reporter=reporter)
    return dict(reporter.final_metrics or result.metrics)


def _with_recipe_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """Fill ``arch`` / ``space`` / ``distill`` from a student recipe that assigns them (explicit values win)."""
    import runpy

    base = params.get("config")
    if not isinstance(base, (str, os.PathLike)) or not os.fspath(base).endswith(".py"):
        return params
    if not os.path.isfile(base):
        raise ConfigError(f"{base}: no such recipe file")
    namespace = runpy.run_path(os.fspath(base))
    if namespace.get("arch") and "arch" not in params and "uniform_ratio" not in params:
        params["arch"] = namespace["arch"]
    if namespace.get("space") is not None and "space" not in params:
        params["space"] = namespace["space"]
    if namespace.get("distill") or params.get("distill"):
        params["distill"] = {**dict(namespace.get("distill") or {}), **dict(params.get("distill") or {})}
    return params


#: tnas.train parameters that are not TrainConfig fields (popped before the config is built)
_STUDENT_KEYS = ("distill", "uniform_ratio", "space", "arch", "sample", "latency")


def _check_train(params: dict[str, Any], scratch: str) -> Any:
    import json

    from facenas.adapters.nni.check import PLACEHOLDER
    from facenas.plugins.engine.stages import check_train_params
    from facenas.plugins.tnas.distill import DistillSettings, uniform_description

    params = _with_recipe_defaults(dict(params))
    DistillSettings.from_dict(params.get("distill"))
    ratio, space = params.get("uniform_ratio"), params.get("space")
    if isinstance(ratio, (int, float)) and isinstance(space, Mapping) and PLACEHOLDER not in json.dumps(space):
        uniform_description(space, float(ratio))  # a width candidate of the space, as the run needs
    rest = {k: v for k, v in params.items() if k not in _STUDENT_KEYS}
    return check_train_params({**rest, "arch": PLACEHOLDER}, scratch)


@STAGES.register("tnas.train")
@checks_params(_check_train)
def tnas_train(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Train a (searched or uniformly narrowed) student by FKD (+ optional margin loss)."""
    from facenas.plugins.engine.stages import config_from_params
    from facenas.plugins.tnas.distill import DistillSettings, resolve_arch, train_student, uniform_description

    params = _with_recipe_defaults(dict(params))
    settings = DistillSettings.from_dict(params.pop("distill", None))
    ratio = params.pop("uniform_ratio", None)
    space = params.pop("space", None)
    arch = params.pop("arch", None)
    shown = params.pop("sample", None)
    latency = params.pop("latency", True)
    if (arch is None) == (ratio is None):
        raise ConfigError("tnas.train needs exactly one of 'arch' (a description, arch.json or search folder) and "
                          "'uniform_ratio' (with 'space', the TnasSpace config)")
    if ratio is not None:
        if not isinstance(space, Mapping):
            raise ConfigError("tnas.train: 'uniform_ratio' needs 'space' (the TnasSpace config dict)")
        arch = uniform_description(space, float(ratio))
    params["arch"] = resolve_arch(arch)
    cfg = config_from_params(params, reporter.out_dir)
    description = _description(cfg.network)
    if shown is not None and (description is None or dict(shown) != dict(description.get("sample") or {})):
        raise ConfigError(f"tnas.train: 'sample' {shown} is not the sample of 'arch' "
                          f"({None if description is None else description.get('sample')})")
    result = train_student(cfg, cfg.network, settings, reporter=reporter)
    final = dict(result.metrics)
    final["distill_weight"] = settings.distill_weight
    final["margin_weight"] = settings.margin_weight
    lat = network_latency_ms(result.model, latency)
    if lat is not None:
        final["latency_ms"] = lat
    if description is not None:
        final["arch"] = description
    reporter.final(final)
    return dict(reporter.final_metrics or final)
