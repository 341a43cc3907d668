"""Runtime stages for pipelines (``STAGES``): ``runtime.lut`` builds a latency table, ``runtime.latency``
times a trained network in onnxruntime and TFLite.

``runtime.lut`` is ``facenas lut build`` as a step: parameters are the fields of
:class:`~facenas.adapters.runtime.lut.BuildConfig` (``space``, ``space_config``, ``runtime``,
``threads``, ``warmup``, ``runs``, ``min_time_s``, ``rounds``, ``clock``, ``statistic``,
``calibrate``, ``seed``), plus ``out`` (the table file; default
``<trial folder>/lut_<space>_<runtime>_t<threads>.json``, resumed if it exists), ``validate``
(random subnets timed whole against the prediction, ``facenas lut validate``; 0: off) and
``percentiles`` (default ``[35, 75]``: of the predicted latency of ``bound_samples`` random subnets,
seed ``bound_seed``; a search step can take its bound from them). Final: ``table`` (the file, for
``ofa.search``'s ``cost: {lut: ...}``), ``entries``, ``fit_mape``, ``p<q>_ms``, and with
``validate`` the ``spearman``, ``mape`` and ``within_10pct`` of the prediction; every latency is
:class:`~facenas.adapters.runtime.latency_model.LatencyModel`'s prediction.

Parameters (JSON): ``model`` -- a checkpoint (``last.pt`` of an ``engine.train`` step: always
written, the same architecture as ``best.pt``), an architecture description, a backbone name, or
``{"config": RECIPE, FIELD: value ...}``: the network ``engine.train`` would build from that recipe
and overrides (e.g. ``network_kwargs``), untrained (latency does not depend on the weights, so a
reference trained elsewhere is timed without training it again) -- or ``models`` (``{name: model}``: several networks, e.g. a reference and a searched one, timed in
the same interleaved rounds; final ``latency_ms`` is then ``{name: {runtime: ms}}`` with flat
``latency_<name>_<runtime>_ms``) -- and optionally ``runtimes`` (default
``["onnxruntime", "tflite"]``), ``threads`` (1), ``rounds`` (3), ``runs`` (50), ``min_time_s`` (0.2),
``clock`` (``cpu``: the calling thread's CPU time, which a busy machine does not inflate; needs
``threads: 1``) and ``passes`` (per runtime, the graph passes of the export; default: each
runtime's best, :func:`~facenas.adapters.runtime.graph_passes.default_passes`).

The network is exported once per runtime at its native input size, batch 1, and the runtimes are
timed in interleaved rounds (side by side: every runtime sees the same machine load); the median
of the round medians is reported. Final metrics: ``latency_ms`` (``{runtime: ms}``), one flat
``latency_<runtime>_ms`` per runtime (what the pipeline summary tabulates), ``mflops``,
``params_m`` and ``default`` = the first runtime's latency.

:func:`network_latency_ms` is the one-runtime timing the method stages that produce a final network
report as ``latency_ms`` (their ``latency`` parameter).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from facenas.errors import ConfigError
from facenas.nas.report import Reporter
from facenas.nas.stages import STAGES, auxiliary_stage, checks_params, exclusive_stage

log = logging.getLogger(__name__)

STAGE_RUNTIMES = ("onnxruntime", "tflite")

#: how a stage that produces a final network times it unless its ``latency`` parameter says otherwise
LATENCY_DEFAULTS = {"runtime": "onnxruntime", "threads": 1, "warmup": 5, "runs": 20}


def network_latency_ms(model: Any, latency: Any = True) -> float | None:
    """Batch-1 latency (median ms) of a trained network at its native input size, for ``latency_ms``.

    ``model``: an ``nn.Module`` or a facenas checkpoint file.

    ``latency``: True (onnxruntime, 1 thread, 20 runs), False (not measured: None), or a dict of
    :data:`LATENCY_DEFAULTS` overrides (``runtime``: ``onnxruntime``/``tflite``/``torch``).
    """
    from facenas.adapters.runtime.latency import measure_latency

    if latency is False or latency is None:
        return None
    opts = dict(LATENCY_DEFAULTS)
    if isinstance(latency, Mapping):
        unknown = sorted(set(latency) - set(opts))
        if unknown:
            raise ConfigError(f"'latency' has unknown key(s) {unknown}; known: {sorted(opts)}")
        opts.update(latency)
    elif latency is not True:
        raise ConfigError(f"'latency' must be true, false or a dict of {sorted(opts)}; got {latency!r}")
    target = model if isinstance(model, (str, os.PathLike)) else model.eval()
    res = measure_latency(target, str(opts["runtime"]), threads=int(opts["threads"]),
                          warmup=int(opts["warmup"]), runs=int(opts["runs"]))
    return float(res.median_ms)


def runners_for(module: Any, input_chw: tuple[int, int, int], runtimes: Sequence[str], threads: int,
                passes: Mapping[str, Sequence[str]] | None, tmp: Path) -> dict[str, Any]:
    """A batch-1 runner per runtime of ``module``, each exported with that runtime's graph passes."""
    from facenas.adapters.runtime.graph_passes import default_passes
    from facenas.adapters.runtime.latency import onnx_runner
    from facenas.adapters.runtime.onnx_export import torch_export

    runners = {}
    for runtime in runtimes:
        chosen = tuple((passes or {}).get(runtime, default_passes(runtime)))
        path = tmp / f"{runtime}.onnx"
        torch_export(module, path, input_chw, dynamic_batch=False, passes=chosen)
        if runtime == "onnxruntime":
            runners[runtime] = onnx_runner(path, threads)[0]
        else:
            import onnx

            from facenas.adapters.runtime.tflite_export import onnx_to_tflite, tflite_runner

            runners[runtime] = tflite_runner(onnx_to_tflite(onnx.load(str(path)), "nhwc"), threads)[0]
    return runners


def time_side_by_side(runners: Mapping[str, Any], rounds: int = 3, runs: int = 50, min_time_s: float = 0.2,
                      clock: str = "cpu") -> dict[str, dict[str, Any]]:
    """Median latency (ms) per runner over interleaved rounds, with each round's median."""
    from facenas.adapters.runtime.latency import time_runner

    medians: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(max(int(rounds), 1)):
        for key, run in runners.items():
            medians[key].append(float(np.median(time_runner(run, 10, runs, min_time_s, clock)) * 1e3))
    return {k: {"median_ms": float(np.median(v)), "round_medians_ms": v} for k, v in medians.items()}


def is_train_config(source: Any) -> bool:
    """Whether a ``model`` entry is ``{"config": RECIPE, ...}`` (a network built from a training recipe)."""
    return isinstance(source, Mapping) and "config" in source and "format" not in source


def model_from_train_config(source: Mapping[str, Any]):
    """The untrained network ``engine.train`` builds from ``{"config": RECIPE, FIELD: override ...}``, as a
    :class:`~facenas.adapters.runtime.models.LoadedModel` at the recipe's input size (seeded: the same
    weights every time)."""
    import torch

    from facenas.adapters.runtime.models import LoadedModel
    from facenas.plugins.engine.trainer import build_backbone

    cfg = _train_config(source)
    torch.manual_seed(0)
    module = build_backbone(cfg).eval()
    size = cfg.input_size()
    label = f"{cfg.network} {json.dumps(cfg.network_kwargs, sort_keys=True)} (untrained, from {source['config']})"
    return LoadedModel(module, (size, size), label, "config", False)


def _train_config(source: Mapping[str, Any]):
    from facenas.config import load_config_module
    from facenas.plugins.engine.config import TrainConfig

    base, overrides = source["config"], {k: v for k, v in source.items() if k != "config"}
    data = {**(dict(base) if isinstance(base, Mapping) else load_config_module(str(base), TrainConfig).to_dict()),
            **overrides}
    data.setdefault("rec", "synthetic")  # the network does not depend on the data: a config dict need not name it
    return TrainConfig.from_dict(data, source="runtime.latency model {config: ...}")


def _check_latency(params: dict[str, Any], scratch: str) -> Any:
    """Dry run: the networks given as training recipes build (a wrong ``network_kwargs`` fails here; nothing is timed)."""
    sources = params.get("models") if isinstance(params.get("models"), Mapping) else {"": params.get("model")}
    return [model_from_train_config(src).source for src in sources.values() if is_train_config(src)]


@STAGES.register("runtime.latency")
@exclusive_stage
@checks_params(_check_latency)
def runtime_latency(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Export ``model`` (or each of ``models``) with each runtime's best passes and time it batch-1 in every
    runtime, side by side: every network x runtime in the same interleaved rounds."""
    from facenas.adapters.runtime.graph_passes import default_passes
    from facenas.adapters.runtime.latency import device_info
    from facenas.adapters.runtime.models import load_model
    from facenas.nas.flops import count_flops, count_params

    params = dict(params)
    if ("model" in params) == ("models" in params):
        raise ConfigError("runtime.latency needs 'model' (a checkpoint, e.g. \"${train.result.output}/last.pt\") or "
                          "'models' ({name: checkpoint}: several networks timed side by side), not both")
    models = params.get("models")
    if models is not None and (not isinstance(models, Mapping) or not models):
        raise ConfigError(f"runtime.latency 'models' must be a non-empty mapping {{name: checkpoint}}, got {models!r}")
    runtimes = list(params.get("runtimes", STAGE_RUNTIMES))
    bad = [r for r in runtimes if r not in STAGE_RUNTIMES]
    if bad or not runtimes:
        raise ConfigError(f"runtime.latency runtimes {runtimes}: each must be one of {list(STAGE_RUNTIMES)}")
    threads, clock = int(params.get("threads", 1)), str(params.get("clock", "cpu"))
    if clock == "cpu" and threads != 1:
        raise ConfigError("runtime.latency clock 'cpu' times the calling thread only; use it with threads: 1")
    passes = params.get("passes")
    named = {str(k): v for k, v in models.items()} if models is not None else {"": params["model"]}
    loaded = {name: model_from_train_config(src) if is_train_config(src) else load_model(src, params.get("network"))
              for name, src in named.items()}
    with tempfile.TemporaryDirectory(prefix="facenas-stage-lat-") as tmp:
        runners = {}
        for i, (name, net) in enumerate(loaded.items()):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            size = tuple(net.input_size)
            for runtime, run in runners_for(net.module.eval(), (3, *size), runtimes, threads, passes, folder).items():
                runners[(name, runtime)] = run
        timed = time_side_by_side(runners, int(params.get("rounds", 3)), int(params.get("runs", 50)),
                                  float(params.get("min_time_s", 0.2)), clock)
    per = {name: {r: timed[(name, r)]["median_ms"] for r in runtimes} for name in loaded}
    for name, net in loaded.items():
        for r in runtimes:
            log.info("%s [%s, %d thread(s), batch 1, %s]: %.3f ms", net.source, r, threads,
                     "x".join(map(str, net.input_size)), per[name][r])
    common = {"passes": {r: list((passes or {}).get(r, default_passes(r))) for r in runtimes}, "threads": threads,
              "clock": clock, "device": device_info()}
    if models is not None:
        final: dict[str, Any] = {"default": per[next(iter(per))][runtimes[0]], "latency_ms": per, **common}
        for name, net in loaded.items():
            size = tuple(net.input_size)
            final.update({f"latency_{name}_{r}_ms": per[name][r] for r in runtimes})
            final[f"mflops_{name}"] = count_flops(net.module, (1, 3, *size)) / 1e6
        final["rounds"] = {name: {r: timed[(name, r)]["round_medians_ms"] for r in runtimes} for name in loaded}
        final["models"] = {name: _source_text(src) for name, src in named.items()}
        final["trained"] = {name: net.trained for name, net in loaded.items()}
        return final
    net = loaded[""]
    size = tuple(net.input_size)
    latency = per[""]
    final = {"default": latency[runtimes[0]], "latency_ms": latency}
    final.update({f"latency_{r}_ms": latency[r] for r in runtimes})
    final["mflops"] = count_flops(net.module, (1, 3, *size)) / 1e6
    final["params_m"] = count_params(net.module) / 1e6
    final["rounds"] = {r: timed[("", r)]["round_medians_ms"] for r in runtimes}
    final.update(common, model=_source_text(params["model"]), input_size=list(size), trained=net.trained)
    return final


def _source_text(src: Any) -> str:
    return json.dumps(src, sort_keys=True) if isinstance(src, Mapping) else str(src)


#: ``runtime.lut`` parameters that are not BuildConfig fields
_LUT_EXTRA = ("out", "validate", "percentiles", "bound_samples", "bound_seed")


def _lut_config(params: Mapping[str, Any]):
    from facenas.adapters.runtime.lut import BuildConfig
    from facenas.nas.space import create_space

    cfg = BuildConfig.from_dict({k: v for k, v in params.items() if k not in _LUT_EXTRA}, source="runtime.lut parameters")
    if cfg.runtime not in ("onnxruntime", "tflite", "torch"):
        raise ConfigError(f"runtime.lut runtime '{cfg.runtime}' is not one of ['onnxruntime', 'tflite', 'torch']")
    cfg.resolved_clock()
    create_space(cfg.space, **cfg.space_config).all_latency_blocks()  # a space that describes its blocks
    return cfg


def _check_lut(params: dict[str, Any], scratch: str) -> Any:
    return _lut_config(params)


@STAGES.register("runtime.lut")
@auxiliary_stage
@exclusive_stage
@checks_params(_check_lut)
def runtime_lut(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Build (or resume) the latency table of a space on this machine; optionally validate it."""
    from facenas.adapters.runtime.latency_model import LatencyModel
    from facenas.adapters.runtime.lut import build_table, sample_subnets, validate_table

    cfg = _lut_config(params)
    out = str(params.get("out") or os.path.join(os.fspath(reporter.out_dir),
                                                f"lut_{cfg.space}_{cfg.runtime}_t{cfg.threads}.json"))
    table = build_table(cfg, out)
    model = LatencyModel(table)
    final: dict[str, Any] = {"table": out, "space": table.space, "runtime": table.runtime, "threads": table.threads,
                             "entries": len(table.entries), "device": table.device}
    if table.calibration:
        final["fit_mape"] = float(table.calibration["fit_mape"])
    subnets = sample_subnets(model.space, int(params.get("bound_samples", 300)), int(params.get("bound_seed", 7)))
    predicted = np.array([model.predict(s) for s in subnets])
    for q in params.get("percentiles", [35, 75]):
        final[f"p{float(q):g}_ms"] = float(np.percentile(predicted, float(q)))
    final["predicted_ms"] = {"min": float(predicted.min()), "median": float(np.median(predicted)),
                             "max": float(predicted.max())}
    n_val = int(params.get("validate", 0))
    final["default"] = 0.0
    if n_val > 0:
        res = validate_table(table, n_val, seed=int(params.get("seed", 0)) + 1)
        for key in ("spearman", "mape", "within_10pct", "raw_spearman", "raw_mape", "measurement_retest_spearman"):
            if res.get(key) is not None:
                final[key] = float(res[key])
        final["default"] = float(res["spearman"])
        from facenas.utils.io import write_json

        write_json(os.path.join(os.fspath(reporter.out_dir), "validate.json"), res)
    log.info("latency table %s: %d entries, predicted %.3f-%.3f ms over %d random subnets", out, len(table.entries),
             predicted.min(), predicted.max(), len(subnets))
    return final
