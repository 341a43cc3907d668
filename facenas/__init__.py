"""facenas: neural architecture search for face recognition on InsightFace data, run through NNI.

``import facenas`` is cheap: torch, NNI, TensorFlow, onnxruntime and LightGBM are imported only by
the modules that need them. Sub-packages:

- :mod:`facenas.nas` -- the NAS API: search spaces, strategies, stages, reporters
- :mod:`facenas.adapters` -- edges to outside toolkits (InsightFace formats and heads, NNI, runtimes)
- :mod:`facenas.plugins` -- the search methods (OFA, ENAS, TNAS) and the training engine
- :mod:`facenas.recipes` -- config modules and NNI experiment files a user runs
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "get_model"]


def __getattr__(name: str):
    # Lazy so that `import facenas` does not import torch.
    if name == "get_model":
        from facenas.nas.backbones import get_model

        return get_model
    raise AttributeError(f"module 'facenas' has no attribute {name!r}")
