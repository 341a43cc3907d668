"""Once-for-All face search (Savchenko et al., IEEE Access 2023, building on Cai et al., ICLR 2020).

One elastic MobileNetV3 supernet is trained once (progressive shrinking); any subnet is then
extracted with its weights in seconds, and an evolutionary search driven by a neural architecture
comparator (a LightGBM binary classifier over pairs of architectures, Sec. IV-B) picks the most
accurate subnet under a latency bound from a per-device lookup table (Algorithm 1).

Modules, from the bottom up:

* :mod:`.ops` -- elastic operators that slice the largest weights (depthwise conv with OFA's
  kernel transformation matrices, pointwise conv, BN, SE) and their static counterparts;
* :mod:`.blocks` -- the static and elastic inverted-residual (MBConv) blocks and the face heads;
* :mod:`.network` -- the static face network :class:`~.network.OFAFaceNet` and the elastic
  :class:`~.network.OFASupernet` with ``get_active_subnet``;
* :mod:`.space` -- the ``ofa`` search space (labels, sampling, encoding, FLOPs, latency blocks);
* :mod:`.calibrate` -- BN statistics recalibration of an extracted subnet;
* :mod:`.costs` -- additive per-block cost tables (latency lookup tables, FLOPs) over genomes;
* :mod:`.predictors` -- the LightGBM comparator (compiled to vectorised numpy) and OFA's MLP
  accuracy predictor, with hold-out ranking metrics;
* :mod:`.search` -- Algorithm 1 (evolution + QuickSelect by the comparator) and the same evolution
  with a regression predictor (sorting); the ask/tell ``ofa_evolution`` strategy;
* :mod:`.train` -- progressive shrinking (the accuracy set of random subnets is a pipeline step:
  ``ofa.evaluate`` trials sampled from the space, see ``recipes/nni/ofa_cpu.yml``);
* :mod:`.stages` -- the ``ofa.*`` trial stages for NNI.
"""
from facenas.methods import MethodSpec

#: What ``facenas.methods`` discovers through this package's entry point (``setup.py``).
FACENAS_METHOD = MethodSpec(
    spaces=("facenas.plugins.ofa.space",), stages=("facenas.plugins.ofa.stages",),
    strategies=("facenas.plugins.ofa.search",), search_stage="ofa.train_supernet", docs="docs/ofa.md",
    summary="Once-for-All supernet + LightGBM comparator evolution under a latency bound (Savchenko 2023)")
