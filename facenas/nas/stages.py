"""Registry of search *stages*: the units of work a trial runs.

A stage is ``fn(params: dict, reporter: Reporter) -> dict`` (its final metrics). Parameters are
JSON (they travel through NNI); artefacts go to ``reporter.out_dir`` and are referred to by path
in later stages' parameters. Stage names are ``<method>.<what>`` (``ofa.train_supernet``,
``enas.search``, ``engine.train``, ``toy.evaluate``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from facenas.methods import method_modules
from facenas.nas.report import LocalReporter, Reporter
from facenas.nas.results import CONFIG, FINAL, METRICS
from facenas.registry import Registry

Stage = Callable[[Mapping[str, Any], Reporter], Mapping[str, Any]]

#: Stages: the infrastructure's (toy, data, engine.train) and every installed method's
#: (``facenas.methods`` entry points).
STAGES: Registry = Registry(
    "stage",
    modules=[
        "facenas.plugins.toy_stages",
        "facenas.plugins.data_stages",  # data.synthetic, defined in the adapters
        "facenas.plugins.engine.stages",
        "facenas.plugins.runtime_stages",  # runtime.latency (onnxruntime and TFLite side by side)
    ],
    discover=lambda: method_modules("stages"),
)


def checks_params(check: Callable[[dict[str, Any], str], Any]) -> Callable[[Stage], Stage]:
    """Give a stage its dry-run check: ``check(params, scratch_folder)`` builds (so validates) the
    config the stage would build from ``params`` and runs nothing (``facenas nni check`` calls it;
    ``${...}`` references arrive replaced by a placeholder path)."""
    def mark(fn: Stage) -> Stage:
        fn.check_params = check  # type: ignore[attr-defined]
        return fn
    return mark


def auxiliary_stage(fn: Stage) -> Stage:
    """Mark a stage whose trials yield no network to rank (data, supernet training, a search).

    A pipeline step of such a stage defaults to the ``auxiliary`` role (see
    :mod:`facenas.adapters.nni.pipeline`): its ``default`` never competes for the portal's best trial.
    """
    fn.default_role = "auxiliary"  # type: ignore[attr-defined]
    return fn


def exclusive_stage(fn: Stage) -> Stage:
    """Mark a stage whose trials must run alone on their machine: timing (latency, latency tables).

    A pipeline step of such a stage defaults to ``exclusive`` (see
    :mod:`facenas.adapters.nni.pipeline`): its trials run one at a time and no other trial runs
    beside them, so a measurement never shares the cores with another trial.
    """
    fn.exclusive = True  # type: ignore[attr-defined]
    return fn


def run_stage(name: str, params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Run the registered stage ``name``; report and return its final metrics."""
    from facenas.utils.lock import output_lock

    stage = STAGES.get(name)
    with output_lock(reporter.out_dir, f"stage {name}"):  # one writer per output folder
        metrics = dict(stage(params, reporter))
    if reporter.final_metrics is None:
        reporter.final(metrics)
    return dict(reporter.final_metrics or metrics)


def run_stage_locally(name: str, params: Mapping[str, Any], out_dir: str) -> dict[str, Any]:
    """Run a stage without NNI, reporting to ``out_dir`` (metrics.jsonl, final.json)."""
    return run_stage(name, params, LocalReporter(out_dir))


def continue_requeued_trial(config: Any, params: Mapping[str, Any], folder: str | os.PathLike) -> None:
    """Set ``config.resume`` when ``folder`` already holds a training checkpoint.

    NNI re-queues running trials when an experiment resumes; a trial that runs again in its folder
    continues its training, where a fresh run would be refused. An explicit ``resume`` (a top-level
    parameter, or true in a ``config`` dict -- a full config dict always holds ``resume=False``) or
    ``overwrite`` is left as it is.
    """
    base = params.get("config")
    explicit = "resume" in params or (isinstance(base, Mapping) and bool(base.get("resume")))
    if explicit or config.overwrite:
        return
    folder = Path(folder)
    if any(folder.glob("checkpoint*.pt")):
        logging.getLogger(__name__).info("%s holds a training checkpoint: continuing it (resume=True)", folder)
        config.resume = True
        return
    # Stopped before its first checkpoint: nothing to continue, so the trial starts over in its folder
    # (the files of that start are all it loses) instead of failing on "an interrupted run".
    started = [n for n in (CONFIG, METRICS) if (folder / n).is_file()]
    if started and not (folder / FINAL).is_file():
        logging.getLogger(__name__).warning("%s holds a run stopped before its first checkpoint (%s): starting it "
                                            "over (overwrite=True)", folder, ", ".join(started))
        config.overwrite = True


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
