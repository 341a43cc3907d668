"""A :class:`~facenas.plugins.report.Reporter` that reports to NNI as well as to files.

Per-epoch ``reporter.intermediate(...)`` becomes ``nni.report_intermediate_result`` (the portal's
intermediate-result chart of the trial) and ``reporter.final(...)`` one
``nni.report_final_result`` dict with ``default`` plus the named metrics. NNI and its portal only
handle numbers there, so strings and lists (artefact paths, architectures) are kept out of what NNI
receives; they stay in ``metrics.jsonl`` / ``final.json`` and the trial's ``result.json``.
Non-finite numbers are dropped too (JSON has no NaN/Infinity, and the portal would choke).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from facenas.adapters.nni import _imports
from facenas.plugins.report import LocalReporter


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


class NNIReporter(LocalReporter):
    """Writes ``metrics.jsonl`` / ``final.json`` under ``out_dir`` and forwards to NNI.

    Works wherever ``nni.report_*`` works: in an ``nnictl`` trial, inside ``NasExperiment``'s
    sequential engine (which routes reports to the model being evaluated), or standalone (NNI
    then only logs the values).
    """

    def _emit_intermediate(self, metrics: dict[str, Any]) -> None:
        super()._emit_intermediate(metrics)
        _imports.nni().report_intermediate_result(nni_metric_dict(metrics))

    def _emit_final(self, metrics: dict[str, Any]) -> None:
        super()._emit_final(metrics)
        _imports.nni().report_final_result(nni_metric_dict(metrics))
