"""Trial stages of the example method (``STAGES``), run locally or as NNI trials.

``random_search.evaluate``
    Train one sample of ``random_search_tiny`` briefly with facenas's training engine (the
    ``engine.train`` stage, given the sample's architecture description) and verify it.
    Parameters: ``sample`` (required), ``space_config`` (the space's kwargs), plus
    ``engine.train``'s (``config``: a TrainConfig recipe or dict, and field overrides). Final:
    the engine's metrics (verification accuracies, ``mflops``, ``params_m``) and ``arch`` (the
    ``facenas.arch/1`` description) with ``arch_path`` (where it is saved).
``random_search.search``
    A whole random search in one trial: ``budget`` samples from the ``random_under_flops``
    strategy (``max_mflops``, ``seed``), each evaluated as above in its own sub-folder and
    reported as an intermediate result (``default`` = best so far). Final: the best sample's
    metrics, ``arch`` / ``arch_path`` (``<out_dir>/arch.json``) and ``architectures`` (all, best
    first) for retrain steps.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from facenas.errors import ConfigError
from facenas.nas.report import LocalReporter, Reporter
from facenas.nas.space import create_space
from facenas.nas.stages import STAGES
from facenas.utils.io import write_json

SPACE = "random_search_tiny"
#: Training used when the parameters give no ``config``: seconds per sample on synthetic faces.
DEFAULT_TRAINING: dict[str, Any] = {
    "rec": "synthetic", "image_size": 32, "embedding_size": 16, "batch_size": 32, "num_epoch": 1,
    "warmup_epoch": 0, "lr": 0.05, "num_workers": 0, "device": "cpu", "threads": 1, "verbose": 100000,
}


def _evaluate(sample: Mapping[str, Any], space_config: Mapping[str, Any], params: Mapping[str, Any],
              reporter: Reporter) -> dict[str, Any]:
    space = create_space(SPACE, **dict(space_config))
    desc = space.describe(space.validate(sample))
    arch_path = os.path.join(os.fspath(reporter.out_dir), "arch.json")
    write_json(arch_path, desc)
    train_params = {"config": DEFAULT_TRAINING, **dict(params), "arch": arch_path}
    return {**STAGES.get("engine.train")(train_params, reporter), "arch": desc, "arch_path": arch_path}


@STAGES.register("random_search.evaluate")
def random_search_evaluate(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Train and verify one sample of the space; ``default`` = the engine's (first verification accuracy)."""
    sample = params.get("sample")
    if sample is None:
        raise ConfigError(f"random_search.evaluate needs 'sample' (a {SPACE} sample); got {sorted(params)}")
    training = {k: v for k, v in params.items() if k not in ("sample", "space_config")}
    return _evaluate(sample, params.get("space_config") or {}, training, reporter)


@STAGES.register("random_search.search")
def random_search_search(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """``budget`` samples under ``max_mflops``, each trained briefly; the best one's description."""
    from facenas.nas.strategy import STRATEGIES

    params = dict(params)
    budget = int(params.pop("budget", 4))
    seed = int(params.pop("seed", 0))
    max_mflops = params.pop("max_mflops", None)
    space_config = params.pop("space_config", None) or {}
    if budget < 1:
        raise ConfigError(f"random_search.search: budget={budget}, expected >= 1")
    space = create_space(SPACE, **dict(space_config))
    strategy = STRATEGIES.create("random_under_flops", space=space, seed=seed, max_mflops=max_mflops)
    results: list[dict[str, Any]] = []

    def evaluate(sample: Mapping[str, Any]) -> dict[str, Any]:
        sub = LocalReporter(reporter.out_dir / f"sample_{len(results):03d}")
        metrics = _evaluate(sample, space_config, params, sub)
        results.append(metrics)
        best = max(float(r["default"]) for r in results)
        reporter.intermediate({"default": best, "sample_default": float(metrics["default"]),
                               "mflops": float(metrics["mflops"]), "evaluated": len(results)})
        return metrics

    strategy.run(evaluate, budget)
    if not results:
        raise ConfigError(f"random_search.search evaluated no sample (max_mflops={max_mflops} leaves none?)")
    ranked = sorted(results, key=lambda r: float(r["default"]), reverse=True)
    arch_path = os.path.join(os.fspath(reporter.out_dir), "arch.json")
    write_json(arch_path, ranked[0]["arch"])
    final = {k: v for k, v in ranked[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    final.update({"arch": ranked[0]["arch"], "arch_path": arch_path, "evaluated": float(len(results)),
                  "architectures": [{"sample": r["arch"]["sample"], "arch": r["arch"], "default": float(r["default"]),
                                     "mflops": float(r["mflops"])} for r in ranked]})
    return final
