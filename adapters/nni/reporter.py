"""A :class:`~facenas.nas.report.Reporter` that reports to NNI as well as to files.

Per-epoch ``reporter.intermediate(...)`` becomes ``nni.report_intermediate_result`` (the portal's
intermediate-result chart of the trial) and ``reporter.final(...)`` one
``nni.report_final_result`` dict with ``default`` plus the named metrics. NNI and its portal only
handle numbers there, so strings and lists (artefact paths, architectures) are kept out of what NNI
receives; they stay in ``metrics.jsonl`` / ``final.json`` and the trial's ``result.json``.
Non-finite numbers are dropped too (the portal would rank them).

A pipeline trial builds its reporter with ``defer_final=True`` and sends the final dict with
:meth:`NNIReporter.send_final` once its ``result.json`` is written: the facenas advisors take a final
result as "this trial's record is on disk" and schedule the trials that depend on it at once, before
NNI's manager notices the trial process has ended (adapters/nni/advisor.py).

The final dict NNI receives also names the trial's pipeline ``step`` and ``role`` (strings: the
portal's trial table offers every final-metric key as a column), and its ``default`` follows the
role (:func:`portal_metrics`): the portal's best trial is the best candidate network.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from facenas.adapters.nni import _imports
from facenas.nas.report import LocalReporter


def nni_metric_dict(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, finite entries of ``metrics`` as floats (``default`` first)."""
    out: dict[str, float] = {}
    for key in ["default", *[k for k in metrics if k != "default"]]:
        if key not in metrics:
            continue
        value = metrics[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


def portal_metrics(metrics: Mapping[str, Any], step: str | None = None, role: str = "candidate") -> dict[str, Any]:
    """The final dict NNI gets: numbers, plus ``step`` / ``role``; ``default`` NaN unless a candidate.

    NNI's portal calls the trial with the highest final ``default`` the best one (maximize) and
    leaves non-finite ones out of that ranking, so a reference network (a teacher, a uniform
    baseline) or a step without a network (data, supernet, search) reports ``default`` = NaN and
    its own measure as ``objective`` (which the facenas advisors read back as the step's default).
    """
    out: dict[str, Any] = dict(nni_metric_dict(metrics))
    if role != "candidate" and "default" in out:
        out["objective"] = out["default"]
        out["default"] = math.nan
    if step is not None:  # a pipeline trial (NasExperiment's engine gets numbers only)
        out["step"] = step
        out["role"] = role
    return out


class NNIReporter(LocalReporter):
    """Writes ``metrics.jsonl`` / ``final.json`` under ``out_dir`` and forwards to NNI.

    Works wherever ``nni.report_*`` works: in an ``nnictl`` trial, inside ``NasExperiment``'s
    sequential engine (which routes reports to the model being evaluated), or standalone (NNI
    then only logs the values). ``step`` and ``role`` (a pipeline step's) shape the final dict
    (:func:`portal_metrics`).
    """

    def __init__(self, out_dir: Any, step: str | None = None, role: str = "candidate", defer_final: bool = False):
        super().__init__(out_dir)
        self.step, self.role = step, role
        self.defer_final = defer_final
        self._pending_final: dict[str, Any] | None = None

    def _emit_intermediate(self, metrics: dict[str, Any]) -> None:
        super()._emit_intermediate(metrics)
        _imports.nni().report_intermediate_result(nni_metric_dict(metrics))

    def _emit_final(self, metrics: dict[str, Any]) -> None:
        super()._emit_final(metrics)
        self._pending_final = portal_metrics(metrics, self.step, self.role)
        if not self.defer_final:
            self.send_final()

    def send_final(self) -> None:
        """Send the final dict to NNI (once; nothing when the stage reported no final result)."""
        if self._pending_final is not None:
            final, self._pending_final = self._pending_final, None
            _imports.nni().report_final_result(final)
