"""Strategy bridge: facenas ask/tell strategies inside NNI's ``NasExperiment``, and stages as evaluators.

:class:`FacenasStrategy` is an NNI multi-trial ``Strategy`` that drives any facenas
:class:`~facenas.nas.strategy.Strategy` (``RandomStrategy``, OFA's evolution, ENAS's
controller ...) through the execution engine's submit / wait API: it asks for a sample, freezes
the model space with it and submits the model whenever the engine has an idle worker and budget,
and tells the strategy each finished model's metrics. Metrics are read from the engine's model
list (``engine.list_models()``), which survives the end of a run; the engine's final-metric events
are only used to keep the named metrics of a dict result (NNI's model keeps just ``default``),
because events can be lost at shutdown. A failed model is told as ``default = -inf`` with the
failure noted, and the search goes on, as :meth:`Strategy.run` does locally.

:func:`stage_evaluator` makes an NNI evaluator that runs a registered facenas stage
(``STAGES``) on the frozen model's sample and reports through :class:`NNIReporter`, so the same
stages run in ``nnictl`` trials, in ``NasExperiment`` and locally.

Importing this module imports ``nni.nas`` (slow).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Mapping

from facenas.adapters.nni import _imports

_imports.nas()

from nni.nas.evaluator import FunctionalEvaluator  # noqa: E402
from nni.nas.execution.event import FinalMetricEvent, ModelEventType  # noqa: E402
from nni.nas.space import ModelStatus, RawFormatModelSpace, SimplifiedModelSpace  # noqa: E402
from nni.nas.strategy import Strategy as NNIStrategy  # noqa: E402

from facenas.adapters.nni.model_space import SAMPLE_ATTR  # noqa: E402
from facenas.adapters.nni.reporter import NNIReporter  # noqa: E402
from facenas.errors import FacenasError  # noqa: E402
from facenas.nas.space import SearchSpace, create_space  # noqa: E402
from facenas.nas.strategy import STRATEGIES, SearchExhausted, Strategy  # noqa: E402

log = logging.getLogger(__name__)


def space_of_model_space(model_space: Any) -> SearchSpace:
    """The facenas space behind an NNI executable model space built from a FacenasModelSpace."""
    if isinstance(model_space, SimplifiedModelSpace):
        kwargs = dict(model_space.model.trace_kwargs)
        if "space" in kwargs:
            return create_space(kwargs["space"], **dict(kwargs.get("space_config") or {}))
    if isinstance(model_space, RawFormatModelSpace) and hasattr(model_space.model_space, "facenas_space"):
        return model_space.model_space.facenas_space
    raise FacenasError(
        f"cannot find the facenas space behind {type(model_space).__name__}; build the NNI model space with "
        "facenas.adapters.nni.space.to_model_space(...) or pass a facenas Strategy object"
    )


class FacenasStrategy(NNIStrategy):
    """Run a facenas strategy as an NNI multi-trial strategy.

    Args:
        strategy: a facenas :class:`Strategy` object, or a ``STRATEGIES`` name (``"random"``)
            created on the experiment's space with ``strategy_kwargs`` (e.g. ``seed=0``).
        poll_interval: seconds between looks at the engine while waiting for a worker.
    """

    def __init__(self, strategy: Strategy | str, *, poll_interval: float = 0.2, **strategy_kwargs: Any):
        super().__init__()
        if isinstance(strategy, Strategy):
            if strategy_kwargs:
                raise FacenasError("strategy kwargs are only used with a strategy name, not with a Strategy object")
            self.strategy: Strategy | None = strategy
            self._name = strategy.name
        else:
            STRATEGIES.get(str(strategy))  # unknown names fail now, with close matches
            self.strategy = None
            self._name = str(strategy)
        self._kwargs = strategy_kwargs
        self.poll_interval = poll_interval
        self._submitted: list[Any] = []  # strong refs: the engine then hands back these same objects
        self._told: set[int] = set()
        self._rich_metrics: dict[int, dict[str, Any]] = {}
        self._pending_state: dict[str, Any] | None = None

    def extra_repr(self) -> str:
        return f"strategy={self._name!r}"

    # -- NNI hooks --------------------------------------------------------------------------------
    def _initialize(self, model_space, engine):
        space = self.strategy.space if self.strategy is not None else space_of_model_space(model_space)
        nni_labels = set(model_space.simplify().keys())
        if set(space.labels()) != nni_labels:
            raise FacenasError(
                f"strategy space '{space.name}' has labels {sorted(space.labels())} but the NNI model space has "
                f"{sorted(nni_labels)}; build both from the same space"
            )
        if self.strategy is None:
            self.strategy = STRATEGIES.create(self._name, space=space, **self._kwargs)
        if self._pending_state is not None:
            self.strategy.load_state_dict(self._pending_state)
            self._pending_state = None
        engine.register_model_event_callback(ModelEventType.FinalMetric, self._on_final_metric)
        return model_space

    def _cleanup(self) -> None:
        self.engine.unregister_model_event_callback(ModelEventType.FinalMetric, self._on_final_metric)

    def _run(self) -> None:
        assert self.strategy is not None
        while True:
            self._collect()
            if not self.engine.budget_available():
                log.info("%s: engine budget exhausted after %d models", self._name, len(self._submitted))
                break
            if not self.engine.idle_worker_available():
                time.sleep(self.poll_interval)
                continue
            try:
                sample = self.strategy.ask()
            except SearchExhausted as exc:
                log.info("%s: %s", self._name, exc)
                break
            model = self.model_space.freeze(sample)
            self._submitted.append(model)
            self.engine.submit_models(model)
        if self._submitted:
            self.engine.wait_models(*self._submitted)
        self._collect()

    # -- metrics ----------------------------------------------------------------------------------
    def _on_final_metric(self, event: FinalMetricEvent) -> None:
        if isinstance(event.metric, Mapping):
            self._rich_metrics[id(event.model)] = dict(event.metric)

    def _metrics_of(self, model: Any) -> dict[str, Any]:
        if model.status != ModelStatus.Trained or model.metric is None:
            return {"default": -math.inf, "error": f"model status {model.status.value}"}
        rich = self._rich_metrics.get(id(model))
        if rich is not None and float(rich.get("default", math.nan)) == float(model.metric):
            return rich
        return {"default": float(model.metric)}

    def _collect(self) -> None:
        """Tell the strategy about every submitted model the engine lists as completed."""
        assert self.strategy is not None
        mine = {id(m) for m in self._submitted}
        for model in self.engine.list_models():
            key = id(model)
            if key not in mine or key in self._told or not model.status.completed():
                continue
            self._told.add(key)
            sample = {label: model.sample[label] for label in self.strategy.space.labels()}
            metrics = self._metrics_of(model)
            log.info("%s: %s -> %s", self._name, sample, metrics.get("default"))
            self.strategy.tell(sample, metrics)

    # -- checkpointing (NasExperiment.save_checkpoint / resume) -----------------------------------
    def state_dict(self) -> dict:
        return {"facenas_strategy": self._name, "state": self.strategy.state_dict() if self.strategy else None}

    def load_state_dict(self, state_dict: dict) -> None:
        state = state_dict.get("state")
        if state is None:
            return
        if self.strategy is None:
            self._pending_state = state
        else:
            self.strategy.load_state_dict(state)


def _sample_key(sample: Mapping[str, Any] | None) -> str:
    text = json.dumps(sample or {}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def evaluate_stage(model: Any, stage: str, params: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """Evaluator function: run facenas stage ``stage`` on the frozen model's sample.

    The sample (``model.facenas_sample``, set by the model space's freeze) is passed as
    ``params["sample"]``; artefacts go to ``output_dir/<hash of the sample>``.
    """
    from facenas.nas.stages import STAGES

    sample = getattr(model, SAMPLE_ATTR, None)
    full = dict(params)
    if sample is not None:
        full["sample"] = dict(sample)
    reporter = NNIReporter(Path(output_dir) / _sample_key(sample))
    metrics = dict(STAGES.get(stage)(full, reporter))
    if reporter.final_metrics is None:
        reporter.final(metrics)
    return dict(reporter.final_metrics or metrics)


def stage_evaluator(stage: str, params: Mapping[str, Any] | None = None, output_dir: str | Path = "nas_outputs"):
    """An NNI ``FunctionalEvaluator`` running facenas stage ``stage`` (JSON ``params``) per model."""
    from facenas.nas.stages import STAGES

    STAGES.get(stage)  # fail early on unknown names
    return FunctionalEvaluator(evaluate_stage, stage=stage, params=dict(params or {}), output_dir=str(output_dir))
