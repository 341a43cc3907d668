"""ENAS-style face architecture search (Zhu 2019, "Neural Architecture Search for Deep Face Recognition").

* :mod:`.space` -- the search space (cell DAGs of separable convolutions and poolings, skips
  with nonlinear modules, factorized reductions), registered as ``"enas"`` / ``"enas_test"``;
* :mod:`.model` -- the shared-weight supernet and standalone networks (one class);
* :mod:`.controller` -- the LSTM controller trained with REINFORCE;
* :mod:`.reward` -- the latency-aware reward ``arcsin(Acc x (Latency/Target)^q)``;
* :mod:`.strategy` -- the controller as an ask/tell strategy (``STRATEGIES["enas"]``);
* :mod:`.search` -- the alternating search of Algorithm 1; :mod:`.retrain` -- Algorithm 2;
* :mod:`.stages` -- the ``enas.*`` trial stages for NNI pipelines.
"""
from facenas.methods import MethodSpec

#: What ``facenas.methods`` discovers through this package's entry point (``setup.py``).
FACENAS_METHOD = MethodSpec(
    spaces=("facenas.plugins.enas.space",), stages=("facenas.plugins.enas.stages",),
    strategies=("facenas.plugins.enas.strategy",), search_stage="enas.search", docs="docs/enas.md",
    summary="ENAS-style cell search with an LSTM controller and a latency-aware reward (Zhu 2019)")
