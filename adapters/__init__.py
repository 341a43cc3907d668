"""Edges to outside toolkits: InsightFace formats and components, NNI, deployment runtimes.

Only modules under ``facenas.adapters`` import ``nni``, ``insightface``, ``tensorflow``,
``onnxruntime`` or ``lightgbm``, and they do it lazily.
"""
