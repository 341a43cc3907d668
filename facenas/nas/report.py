"""How a stage of a search reports: per-epoch intermediate metrics and one final metric dict.

Stages (supernet training, a one-shot search, a candidate evaluation, a retrain) take a
:class:`Reporter` and never import NNI. :class:`LocalReporter` logs and writes JSON lines;
:mod:`facenas.adapters.nni` provides a reporter that forwards to ``nni.report_*``.

Metric conventions: ``default`` is the value a
strategy maximises; named fields include ``lfw_acc``, ``lfw_devtest_acc``, ``tar_at_far_1e-3``,
``latency_ms``, ``mflops``, ``params_m``.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping

from facenas.utils.io import append_jsonl, write_json

log = logging.getLogger(__name__)


def with_default(metrics: Mapping[str, Any], default_key: str | None = None) -> dict[str, Any]:
    """Copy of ``metrics`` with a numeric ``default`` (NNI needs it in dict metrics)."""
    out = dict(metrics)
    if "default" not in out:
        if default_key is None:
            numeric = [k for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if not numeric:
                raise ValueError(f"metrics {sorted(out)} have no numeric value to use as 'default'")
            default_key = numeric[0]
        out["default"] = out[default_key]
    value = out["default"]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(float(value)):
        raise ValueError(f"metric 'default' must be a finite number, got {value!r}")
    out["default"] = float(value)
    return out


class Reporter:
    """Base reporter: subclasses override :meth:`_emit_intermediate` / :meth:`_emit_final`.

    Args:
        out_dir: the folder where the stage writes its artefacts (checkpoints, JSON results).
    """

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.intermediates: list[dict[str, Any]] = []
        self.final_metrics: dict[str, Any] | None = None

    def intermediate(self, metrics: Mapping[str, Any], default_key: str | None = None) -> None:
        m = with_default(metrics, default_key)
        self.intermediates.append(m)
        self._emit_intermediate(m)

    def final(self, metrics: Mapping[str, Any], default_key: str | None = None) -> None:
        m = with_default(metrics, default_key)
        self.final_metrics = m
        self._emit_final(m)

    def _emit_intermediate(self, metrics: dict[str, Any]) -> None:
        pass

    def _emit_final(self, metrics: dict[str, Any]) -> None:
        pass


class LocalReporter(Reporter):
    """Logs metrics and appends them to ``out_dir/metrics.jsonl``; final ones to ``final.json``."""

    def _emit_intermediate(self, metrics: dict[str, Any]) -> None:
        log.info("intermediate %s", {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()})
        append_jsonl(self.out_dir / "metrics.jsonl", {"type": "intermediate", **metrics})

    def _emit_final(self, metrics: dict[str, Any]) -> None:
        log.info("final %s", {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()})
        append_jsonl(self.out_dir / "metrics.jsonl", {"type": "final", **metrics})
        write_json(self.out_dir / "final.json", metrics)
