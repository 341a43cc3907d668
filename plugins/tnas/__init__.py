"""TNAS: teacher-guided width and depth search (Wang, AAAI 2021) for IResNet face students.

* :mod:`.space` -- the ``tnas`` search space (widths as ratios of an IResNet's, depths per stage),
  analytic and expected FLOPs, latency-table blocks;
* :mod:`.network` -- the standalone derived network (an IResNet with per-layer widths);
* :mod:`.ops` -- CWI, Gumbel selection (Eqs. 5-6), the mixtures (Eqs. 6-7), the cost loss (Eq. 11);
* :mod:`.supernet` -- the search network with architecture logits;
* :mod:`.teacher` -- frozen teachers (facenas / arcface_torch / ONNX), cached teacher features,
  the feature-distillation loss and its projection;
* :mod:`.data` -- keyed, resumable batches and the engine-side distillation loader;
* :mod:`.search` -- Algorithm 1 (:func:`run_search`); :mod:`.distill` -- training the derived
  student by feature distillation through the training engine;
* :mod:`.stages` -- the ``tnas.search`` and ``tnas.train`` trial stages.
"""
from facenas.methods import MethodSpec

#: What ``facenas.methods`` discovers through this package's entry point (``setup.py``).
FACENAS_METHOD = MethodSpec(
    spaces=("facenas.plugins.tnas.space",), stages=("facenas.plugins.tnas.stages",),
    strategies=(), search_stage="tnas.search", docs="docs/tnas.md",
    summary="TNAS: teacher-guided width/depth search of IResNet students, FKD training (Wang 2021)")
