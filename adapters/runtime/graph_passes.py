"""Graph passes on an exported ONNX model: rewrite ops a runtime runs badly into equivalent, faster forms.

Each pass takes an ``onnx.ModelProto``, rewrites it in place and returns how many nodes it
changed. The rewrites are exact (the outputs are bit-identical in float32), so the export's parity
check still holds; :func:`apply_passes` runs a list of them by name, and :func:`default_passes`
names the list that makes a network fastest on a runtime (measured by
``benchmarks/bench_export_passes.py``).

``prelu_max_min``: ``PRelu(x, a)`` becomes ``Max(x, 0) + a * Min(x, 0)``; ``prelu_relu_min`` the
same with ``Relu(x)`` in place of ``Max(x, 0)``. onnxruntime's NCHWc layout transformer (the
blocked-channel layout its fast CPU convolutions use) does not handle ``PRelu``, so every PReLU
after a convolution reorders the tensor out of and back into the blocked layout; ``Max``/``Relu``,
``Min``, ``Mul`` and ``Add`` stay in it. Each form equals PReLU bit for bit: for ``x >= 0`` it is
``x + a * 0 = x``, for ``x < 0`` it is ``0 + a * x``. Measured (bench_export_passes.json, 1 thread,
64 px): onnxruntime 1.5-2.2x faster on MobileFaceNet, AirFace and IResNet-18 x0.25; TFLite
(XNNPACK) 1-11% faster; ``Max`` a few percent ahead of ``Relu`` in both, so it is the default.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np

from facenas.errors import ConfigError

log = logging.getLogger(__name__)

#: what a pass does: rewrite the model in place, return the number of nodes it rewrote
GraphPass = Callable[[Any], int]

PASSES: dict[str, GraphPass] = {}


def register_pass(name: str) -> Callable[[GraphPass], GraphPass]:
    def deco(fn: GraphPass) -> GraphPass:
        PASSES[name] = fn
        return fn
    return deco


def _unique_name(taken: set[str], base: str) -> str:
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def _rewrite_prelu(model: Any, positive_op: str) -> int:
    """Replace every ``PRelu`` by ``<positive_op>(x) + slope * Min(x, 0)`` (``Relu`` or ``Max``)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    if not any(n.op_type == "PRelu" for n in graph.node):
        return 0
    taken = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    taken |= {t.name for t in graph.initializer}
    node_names = {n.name for n in graph.node}
    zero = _unique_name(taken, "/graph_passes/zero")  # float32, as every facenas export
    graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), zero))
    new_nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "PRelu":
            new_nodes.append(node)
            continue
        x, slope = node.input[0], node.input[1]
        base = _unique_name(node_names, f"/graph_passes/prelu_{count}")
        pos, neg, scaled = (_unique_name(taken, f"{base}/{s}") for s in ("positive", "negative", "scaled"))
        if positive_op == "Relu":
            first = helper.make_node("Relu", [x], [pos], name=f"{base}/Relu")
        else:
            first = helper.make_node("Max", [x, zero], [pos], name=f"{base}/Max")
        new_nodes += [first,
                      helper.make_node("Min", [x, zero], [neg], name=f"{base}/Min"),
                      helper.make_node("Mul", [neg, slope], [scaled], name=f"{base}/Mul"),
                      helper.make_node("Add", [pos, scaled], list(node.output), name=f"{base}/Add")]
        count += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    return count


@register_pass("prelu_relu_min")
def prelu_relu_min(model: Any) -> int:
    """``PRelu(x, a)`` -> ``Relu(x) + a * Min(x, 0)`` (exact)."""
    return _rewrite_prelu(model, "Relu")


@register_pass("prelu_max_min")
def prelu_max_min(model: Any) -> int:
    """``PRelu(x, a)`` -> ``Max(x, 0) + a * Min(x, 0)`` (exact)."""
    return _rewrite_prelu(model, "Max")


#: the passes that make an export fastest, per runtime (benchmarks/results/bench_export_passes.json)
DEFAULT_PASSES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("prelu_max_min",),
    # TFLite runs PRELU natively: the rewrite gained 0-11% in float32, and its int8 quantisation
    # (Max / Min / Mul / Add, each with its own scale) collapsed a 64-px MobileFaceNet's embeddings
    # (min cosine -0.37 to the torch model) where the native PRELU keeps 0.9996
    "tflite": (),
}


def default_passes(runtime: str = "onnxruntime") -> tuple[str, ...]:
    """The passes an export for ``runtime`` gets unless told otherwise."""
    if runtime not in DEFAULT_PASSES:
        raise ConfigError(f"no graph passes are defined for runtime '{runtime}'; known: {sorted(DEFAULT_PASSES)}")
    return DEFAULT_PASSES[runtime]


def apply_passes(model: Any, passes: Sequence[str]) -> dict[str, int]:
    """Run the named passes on ``model`` in order (in place); returns nodes rewritten per pass."""
    unknown = [p for p in passes if p not in PASSES]
    if unknown:
        raise ConfigError(f"unknown graph pass(es) {unknown}; known: {sorted(PASSES)}")
    counts = {}
    for name in passes:
        counts[name] = int(PASSES[name](model))
        if counts[name]:
            log.debug("graph pass %s rewrote %d node(s)", name, counts[name])
    return counts
