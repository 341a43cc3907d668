"""Registry of search *stages*: the units of work a trial runs.

A stage is ``fn(params: dict, reporter: Reporter) -> dict`` (its final metrics). Parameters are
JSON (they travel through NNI); artefacts go to ``reporter.out_dir`` and are referred to by path
in later stages' parameters. Stage names are ``<method>.<what>`` (``ofa.train_supernet``,
``enas.search``, ``engine.train``, ``toy.evaluate``).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from facenas.plugins.report import LocalReporter, Reporter
from facenas.registry import Registry

Stage = Callable[[Mapping[str, Any], Reporter], Mapping[str, Any]]

STAGES: Registry = Registry(
    "stage",
    modules=[
        "facenas.plugins.toy_stages",
        "facenas.adapters.insightface.stages",
        "facenas.plugins.engine.stages",
        "facenas.plugins.ofa.stages",
        "facenas.plugins.enas.stages",
        "facenas.plugins.tnas.stages",
        "facenas.plugins.runtime_stages",
    ],
)


def run_stage(name: str, params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Run the registered stage ``name``; report and return its final metrics."""
    stage = STAGES.get(name)
    metrics = dict(stage(params, reporter))
    if reporter.final_metrics is None:
        reporter.final(metrics)
    return dict(reporter.final_metrics or metrics)


def run_stage_locally(name: str, params: Mapping[str, Any], out_dir: str) -> dict[str, Any]:
    """Run a stage without NNI, reporting to ``out_dir`` (metrics.jsonl, final.json)."""
    return run_stage(name, params, LocalReporter(out_dir))


def config_fields_from_params(params: Mapping[str, Any], config_cls: type) -> dict[str, Any]:
    """The config fields a stage's parameters describe: ``config`` (a recipe path or a dict of
    ``config_cls`` fields, optional) with every other parameter as an override."""
    from facenas.config import load_config_module

    params = dict(params)
    base = params.pop("config", None)
    if base is None:
        return params
    if isinstance(base, Mapping):
        return {**dict(base), **params}
    return {**load_config_module(str(base), config_cls).to_dict(), **params}
