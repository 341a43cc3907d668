"""An NNI ``Profiler`` backed by a latency lookup table, for latency constraints in NNI strategies.

NNI 3.0's NAS strategies take profilers through filters and penalties
(``nni.nas.oneshot.pytorch.profiler.RangeProfilerFilter(profiler, max=...)``,
``ExpectationProfilerPenalty``, the ``filter=`` argument of ``RandomOneShot``); a profiler maps a
sample (a flat ``dict[label, value]``, the same labels facenas spaces use) to a number.
:class:`LatencyTableProfiler` returns the table's corrected prediction in milliseconds, so::

    from nni.nas.oneshot.pytorch.profiler import RangeProfilerFilter
    profiler = LatencyTableProfiler(table=LatencyTable.load("ofa_ort1.json"))
    keep = RangeProfilerFilter(profiler, max=5.0)   # subnets predicted under 5 ms

Labels in an NNI sample that the space does not know (e.g. ones an NNI model space adds) are
ignored; the prediction is :class:`~.latency_model.LatencyModel`'s, and a block missing from the
table raises its :class:`~.lut.MissingLatencyEntry`.
"""
from __future__ import annotations

from typing import Any, Mapping

from facenas.errors import require

require("nni", "the NNI latency profiler", "pip install nni==3.0")

from nni.nas.profiler import Profiler  # noqa: E402

from .latency_model import LatencyModel  # noqa: E402
from .lut import LatencyTable  # noqa: E402


class LatencyTableProfiler(Profiler):
    """Predicted latency (ms) of a sample from a :class:`~.lut.LatencyTable`.

    Args:
        model_space: the NNI model space (unused: the table knows its facenas space; kept for
            NNI's ``Profiler(model_space)`` signature).
        table: the lookup table, or a path to one.
        corrected: apply the table's overhead and calibration correction (default) or return
            the plain block sum.
    """

    def __init__(self, model_space: Any = None, table: LatencyTable | str | None = None, corrected: bool = True):
        super().__init__(model_space)
        if table is None:
            raise ValueError("LatencyTableProfiler needs table= (a LatencyTable or the path of one)")
        self.table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        self.model = LatencyModel(self.table)
        self.space = self.model.space
        self.labels = set(self.space.labels())
        self.corrected = corrected

    def profile(self, sample: Mapping[str, Any]) -> float:
        ours = {k: v for k, v in dict(sample).items() if k in self.labels}
        return self.model.predict(ours) if self.corrected else self.model.block_sum(ours)
