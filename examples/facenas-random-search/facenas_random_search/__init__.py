"""An example facenas search method, packaged and installed on its own (see ARCHITECTURE.md).

* :mod:`.space` -- the ``random_search_tiny`` space: a small CNN face backbone (stem width,
  kernel size, depth, expansion);
* :mod:`.strategy` -- ``random_under_flops``: uniform random search among the samples under a
  MFLOPs bound (bounded rejection sampling; the error reports the bound and the smallest value met);
* :mod:`.stages` -- ``random_search.evaluate`` (train one sample briefly with facenas's engine and
  verify it) and ``random_search.search`` (a whole random search as one trial).

This file only declares the method: facenas imports it through the ``facenas.methods`` entry
point (``pyproject.toml``), and imports the modules named here when a registry is first used.
"""
from facenas.methods import MethodSpec

FACENAS_METHOD = MethodSpec(
    spaces=("facenas_random_search.space",), stages=("facenas_random_search.stages",),
    strategies=("facenas_random_search.strategy",), search_stage="random_search.search",
    docs="examples/facenas-random-search/README.md",
    summary="Example plugin: random search under a FLOPs bound over a tiny CNN face space")
