"""Rebuild an exported ONNX backbone as a TensorFlow function in NHWC layout, for TFLite.

Why not a generic ONNX->TF converter: ONNX graphs are NCHW, TFLite kernels are NHWC. A
node-by-node translation (what ``onnx-tf`` does, and what the OFA paper found gave slow models,
Cai et al. 2020, Sec. 4 / their released TF rebuilds) wraps every convolution in a pair of
transposes. OFA rebuilt its networks in TensorFlow and copied the weights; we do the same
mechanically: every 4-D activation lives in NHWC from input to output, weights are re-laid out
once (``OIHW -> HWIO``, depthwise ``-> HW C 1``), BatchNorm folds into the preceding conv (ONNX
export already folds most), and activations are written in the forms TFLite's converter fuses
(``relu6``, hard-swish ``x * relu6(x + 3) / 6``, PReLU ``relu(x) - a * relu(-x)``). Layout is
tracked per tensor: an op that cannot work in NHWC (a ``Reshape`` of a spatial map, a 4-D
``MatMul``) gets its input transposed back to the logical NCHW order.

``layout="nchw"`` reproduces the naive conversion (a transpose pair around every conv and
pool), kept for the comparison in ``benchmarks/bench_tflite.py``.

The op set covers facenas's backbones (MobileFaceNet, IResNet, AirFace/CBAM, the OFA, ENAS and
TNAS spaces' blocks): Conv (any groups), BatchNormalization, Relu, PRelu, Clip, HardSwish,
HardSigmoid, Sigmoid, Tanh, elementwise arithmetic and Min/Max (the PReLU rewrite's), Global/Reduce
pooling, Max/AveragePool,
Flatten, Reshape, Gemm, MatMul, Concat, Pad, Slice (constant bounds), Transpose, Squeeze/Unsqueeze,
Identity, Dropout and constant shape arithmetic (Shape, Gather, ConstantOfShape, Cast...). Anything else fails with the list of unsupported ops.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

import numpy as np

from facenas.errors import FacenasError

log = logging.getLogger(__name__)

#: logical (NCHW) axis -> NHWC axis, and back
TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}
NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


class UnsupportedOpError(FacenasError):
    """The ONNX graph has ops the TF rebuild does not translate."""


@dataclasses.dataclass
class Value:
    """A tensor during translation: a TF tensor (``nhwc`` when it is a 4-D map stored NHWC) or a numpy constant."""

    data: Any
    nhwc: bool = False

    @property
    def is_const(self) -> bool:
        return isinstance(self.data, np.ndarray)


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class OnnxToTF:
    """Translate a (static-shape, batch 1) ONNX backbone into a ``tf.function``.

    Args:
        model: an ``onnx.ModelProto`` with one input ``(1, C, H, W)``.
        layout: ``nhwc`` (native: no transposes inside) or ``nchw`` (naive: transposes around
            every conv / pool, as a node-by-node converter produces).
    """

    def __init__(self, model: Any, layout: str = "nhwc"):
        from onnx import numpy_helper

        if layout not in ("nhwc", "nchw"):
            raise ValueError(f"layout must be 'nhwc' or 'nchw', not {layout!r}")
        self.model = model
        self.layout = layout
        graph = model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise FacenasError(f"the TF rebuild expects one graph input, found {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        dims = inputs[0].type.tensor_type.shape.dim
        self.input_shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)
        self.output_names = [o.name for o in graph.output]
        unsupported = sorted({n.op_type for n in graph.node if not hasattr(self, f"op_{n.op_type}")})
        if unsupported:
            raise UnsupportedOpError(f"the TFLite rebuild does not translate ONNX op(s) {unsupported}; "
                                     "supported: " + ", ".join(sorted(k[3:] for k in dir(self) if k.startswith("op_"))))

    # -- building ----------------------------------------------------------------------------------------
    def input_spec_shape(self) -> tuple[int, ...]:
        """The TF function's input shape: NHWC (or NCHW in the naive layout)."""
        n, c, h, w = self.input_shape
        return (n, h, w, c) if self.layout == "nhwc" else (n, c, h, w)

    def function(self) -> Callable:
        """A ``tf.function`` from the input (see :meth:`input_spec_shape`) to the first output."""
        import tensorflow as tf

        self.tf = tf
        spec = tf.TensorSpec(self.input_spec_shape(), tf.float32, name="input")

        # autograph off: the rebuild is static Python over the ONNX graph (no tensor-dependent control
        # flow), and converting its code costs ~4 s in every fresh process (each NNI latency trial)
        @tf.function(input_signature=[spec], autograph=False)
        def forward(x):
            return self.run(x)

        return forward

    def run(self, x):
        env: dict[str, Value] = {k: Value(v) for k, v in self.consts.items()}
        env[self.input_name] = Value(x, nhwc=self.layout == "nhwc")
        env[""] = Value(None)
        for node in self.model.graph.node:
            args = [env[name] if name else Value(None) for name in node.input]
            outs = getattr(self, f"op_{node.op_type}")(node, args, _attrs(node))
            if not isinstance(outs, (list, tuple)):
                outs = [outs]
            for name, value in zip(node.output, outs):
                env[name] = value
        out = env[self.output_names[0]]
        return self.plain(out)

    # -- layout helpers ---------------------------------------------------------------------------------
    def t(self, v: Value):
        """The TF tensor (or constant) of ``v`` as stored."""
        return self.tf.constant(v.data) if v.is_const else v.data

    def plain(self, v: Value):
        """``v`` in logical (ONNX) axis order."""
        if v.is_const:
            return self.tf.constant(v.data)
        return self.tf.transpose(v.data, NHWC_TO_NCHW) if v.nhwc else v.data

    def nhwc(self, v: Value):
        """``v`` (a 4-D map) in NHWC order."""
        if v.is_const:
            return self.tf.constant(np.transpose(v.data, NCHW_TO_NHWC))
        return v.data if v.nhwc else self.tf.transpose(v.data, NCHW_TO_NHWC)

    def native_out(self, y) -> Value:
        """Wrap an NHWC result; the naive layout transposes it straight back (as onnx-tf does)."""
        if self.layout == "nhwc":
            return Value(y, nhwc=True)
        return Value(self.tf.transpose(y, NHWC_TO_NCHW))

    @staticmethod
    def rank(v: Value) -> int:
        return v.data.ndim if v.is_const else len(v.data.shape)

    def logical_shape(self, v: Value) -> list[int]:
        if v.is_const:
            return list(v.data.shape)
        shape = [int(d) for d in v.data.shape]
        return [shape[i] for i in NHWC_TO_NCHW] if v.nhwc else shape

    def const_for_nhwc(self, c: np.ndarray, rank: int) -> np.ndarray:
        """Re-lay a constant that broadcasts against a logical rank-4 NCHW tensor stored NHWC."""
        c = np.asarray(c)
        if c.size == 1:
            return c.reshape(())
        full = c.reshape((1,) * (rank - c.ndim) + c.shape)
        return np.transpose(full, NCHW_TO_NHWC)

    # -- elementwise ------------------------------------------------------------------------------------
    def _binary(self, a: Value, b: Value, fn: Callable, np_fn: Callable) -> Value:
        if a.is_const and b.is_const:
            return Value(np_fn(a.data, b.data))
        if (a.nhwc or b.nhwc) and max(self.rank(a), self.rank(b)) == 4:
            def side(v: Value):
                if v.is_const:
                    return self.tf.constant(self.const_for_nhwc(v.data, 4).astype(np.float32))
                if self.rank(v) == 4:
                    return self.nhwc(v)
                return None
            x, y = side(a), side(b)
            if x is not None and y is not None:
                return Value(fn(x, y), nhwc=True)
        return Value(fn(self.plain_or_const(a), self.plain_or_const(b)))

    def plain_or_const(self, v: Value):
        if v.is_const:
            return self.tf.constant(v.data.astype(np.float32) if v.data.dtype == np.float64 else v.data)
        return self.plain(v)

    def op_Add(self, node, a, at):
        return self._binary(a[0], a[1], lambda x, y: x + y, np.add)

    def op_Sub(self, node, a, at):
        return self._binary(a[0], a[1], lambda x, y: x - y, np.subtract)

    def op_Mul(self, node, a, at):
        return self._binary(a[0], a[1], lambda x, y: x * y, np.multiply)

    def op_Div(self, node, a, at):
        if a[0].is_const and a[1].is_const and np.issubdtype(a[0].data.dtype, np.integer):
            return Value(a[0].data // a[1].data)
        return self._binary(a[0], a[1], lambda x, y: x / y, np.divide)

    def op_Pow(self, node, a, at):
        return self._binary(a[0], a[1], lambda x, y: self.tf.pow(x, y), np.power)

    def _variadic(self, args: list[Value], fn: Callable, np_fn: Callable) -> Value:
        out = args[0]
        for other in args[1:]:
            out = self._binary(out, other, fn, np_fn)
        return out

    def op_Min(self, node, a, at):
        return self._variadic(a, lambda x, y: self.tf.minimum(x, y), np.minimum)

    def op_Max(self, node, a, at):
        return self._variadic(a, lambda x, y: self.tf.maximum(x, y), np.maximum)

    def _unary(self, v: Value, fn: Callable) -> Value:
        return Value(fn(self.t(v)), nhwc=v.nhwc)

    def op_Relu(self, node, a, at):
        return self._unary(a[0], self.tf.nn.relu)

    def op_Sigmoid(self, node, a, at):
        return self._unary(a[0], self.tf.sigmoid)

    def op_Tanh(self, node, a, at):
        return self._unary(a[0], self.tf.tanh)

    def op_Neg(self, node, a, at):
        return self._unary(a[0], lambda x: -x)

    def op_Sqrt(self, node, a, at):
        return self._unary(a[0], self.tf.sqrt)

    def op_Exp(self, node, a, at):
        return self._unary(a[0], self.tf.exp)

    def op_Identity(self, node, a, at):
        return a[0]

    def op_Dropout(self, node, a, at):
        return a[0]

    def op_Clip(self, node, a, at):
        lo = float(a[1].data) if len(a) > 1 and a[1].data is not None else at.get("min", -np.inf)
        hi = float(a[2].data) if len(a) > 2 and a[2].data is not None else at.get("max", np.inf)
        if lo == 0.0 and hi == 6.0:
            return self._unary(a[0], self.tf.nn.relu6)
        if lo == 0.0 and hi == np.inf:
            return self._unary(a[0], self.tf.nn.relu)
        return self._unary(a[0], lambda x: self.tf.clip_by_value(x, lo, hi))

    def op_HardSwish(self, node, a, at):
        return self._unary(a[0], lambda x: x * self.tf.nn.relu6(x + 3.0) * (1.0 / 6.0))

    def op_HardSigmoid(self, node, a, at):
        alpha, beta = at.get("alpha", 0.2), at.get("beta", 0.5)
        if abs(alpha - 1.0 / 6.0) < 1e-6 and abs(beta - 0.5) < 1e-6:
            return self._unary(a[0], lambda x: self.tf.nn.relu6(x + 3.0) * (1.0 / 6.0))
        return self._unary(a[0], lambda x: self.tf.clip_by_value(alpha * x + beta, 0.0, 1.0))

    def op_PRelu(self, node, a, at):
        x, slope = a[0], np.asarray(a[1].data, dtype=np.float32)
        if x.nhwc:
            s = self.const_for_nhwc(slope, 4)
        else:
            s = slope.reshape((1,) * (self.rank(x) - slope.ndim) + slope.shape) if slope.size > 1 else slope.reshape(())
        s = self.tf.constant(s)
        return Value(self.tf.nn.relu(self.t(x)) - s * self.tf.nn.relu(-self.t(x)), nhwc=x.nhwc)

    def op_BatchNormalization(self, node, a, at):
        x = a[0]
        gamma, beta, mean, var = (np.asarray(v.data, dtype=np.float64) for v in a[1:5])
        scale = gamma / np.sqrt(var + at.get("epsilon", 1e-5))
        shift = beta - mean * scale
        if x.nhwc or (self.rank(x) == 4 and self.layout == "nhwc"):
            y = self.nhwc(x) * scale.astype(np.float32) + shift.astype(np.float32)
            return Value(y, nhwc=True)
        r = self.rank(x)
        shape = (1, -1) + (1,) * (r - 2)
        y = self.plain(x) * scale.reshape(shape).astype(np.float32) + shift.reshape(shape).astype(np.float32)
        return Value(y)

    # -- convolution and pooling -------------------------------------------------------------------------
    @staticmethod
    def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        return total // 2, total - total // 2

    def _padding(self, x_nhwc, kernel, strides, pads, dilations, pad_value=0.0):
        """TF padding arg for ONNX ``pads`` ([top, left, bottom, right]); explicit pads become a Pad op."""
        h, w = int(x_nhwc.shape[1]), int(x_nhwc.shape[2])
        top, left, bottom, right = pads
        if not any(pads):
            return x_nhwc, "VALID"
        same = (self._same_pads(h, kernel[0], strides[0], dilations[0]), self._same_pads(w, kernel[1], strides[1], dilations[1]))
        if same == ((top, bottom), (left, right)):
            return x_nhwc, "SAME"
        x_nhwc = self.tf.pad(x_nhwc, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=pad_value)
        return x_nhwc, "VALID"

    def op_Conv(self, node, a, at):
        tf = self.tf
        x = self.nhwc(a[0])
        weight = np.asarray(a[1].data, dtype=np.float32)  # (O, I/g, kh, kw)
        bias = np.asarray(a[2].data, dtype=np.float32) if len(a) > 2 and a[2].data is not None else None
        out_c, in_per_group, kh, kw = weight.shape
        group = int(at.get("group", 1))
        strides = list(at.get("strides", [1, 1]))
        dil = list(at.get("dilations", [1, 1]))
        pads = list(at.get("pads", [0, 0, 0, 0]))
        if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise UnsupportedOpError(f"Conv {node.name}: auto_pad={at['auto_pad']} is not translated")
        x, padding = self._padding(x, (kh, kw), strides, pads, dil)
        in_c = int(x.shape[3])
        if group == 1:
            y = tf.nn.conv2d(x, weight.transpose(2, 3, 1, 0), [1, *strides, 1], padding, dilations=dil)
        elif group == in_c and in_per_group == 1 and strides[0] == strides[1]:
            mult = out_c // in_c
            filt = weight.reshape(in_c, mult, kh, kw).transpose(2, 3, 0, 1)
            y = tf.nn.depthwise_conv2d(x, filt, [1, *strides, 1], padding, dilations=dil)
        else:
            xs = tf.split(x, group, axis=3)
            ws = np.split(weight, group, axis=0)
            y = tf.concat([tf.nn.conv2d(xi, wi.transpose(2, 3, 1, 0), [1, *strides, 1], padding, dilations=dil)
                           for xi, wi in zip(xs, ws)], axis=3)
        if bias is not None:
            y = tf.nn.bias_add(y, bias)
        return self.native_out(y)

    def _pool(self, node, a, at, kind: str):
        tf = self.tf
        x = self.nhwc(a[0])
        kernel = list(at["kernel_shape"])
        strides = list(at.get("strides", [1, 1]))
        pads = list(at.get("pads", [0, 0, 0, 0]))
        if at.get("ceil_mode", 0):
            raise UnsupportedOpError(f"{node.op_type} {node.name}: ceil_mode=1 is not translated")
        if kind == "avg" and any(pads) and not at.get("count_include_pad", 0):
            x, padding = self._padding(x, kernel, strides, pads, [1, 1])
            if padding == "VALID" and any(pads):
                raise UnsupportedOpError(f"AveragePool {node.name}: asymmetric padding without count_include_pad")
        else:
            x, padding = self._padding(x, kernel, strides, pads, [1, 1], pad_value=-np.inf if kind == "max" else 0.0)
        fn = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d
        return self.native_out(fn(x, kernel, [1, *strides, 1], padding))

    def op_MaxPool(self, node, a, at):
        return self._pool(node, a, at, "max")

    def op_AveragePool(self, node, a, at):
        return self._pool(node, a, at, "avg")

    def op_GlobalAveragePool(self, node, a, at):
        return self.native_out(self.tf.reduce_mean(self.nhwc(a[0]), axis=[1, 2], keepdims=True))

    def op_GlobalMaxPool(self, node, a, at):
        return self.native_out(self.tf.reduce_max(self.nhwc(a[0]), axis=[1, 2], keepdims=True))

    def _reduce(self, node, a, at, fn):
        x = a[0]
        axes = at.get("axes")
        if axes is None and len(a) > 1 and a[1].data is not None:
            axes = [int(v) for v in np.asarray(a[1].data).ravel()]
        keep = bool(at.get("keepdims", 1))
        r = self.rank(x)
        axes = sorted(int(ax) % r for ax in (axes if axes is not None else range(r)))
        if x.nhwc:
            nhwc_axes = [TO_NHWC_AXIS[ax] for ax in axes]
            if keep:
                return Value(fn(x.data, axis=nhwc_axes, keepdims=True), nhwc=True)
            if axes == [2, 3]:
                return Value(fn(x.data, axis=[1, 2], keepdims=False))
        return Value(fn(self.plain(x), axis=axes, keepdims=keep))

    def op_ReduceMean(self, node, a, at):
        return self._reduce(node, a, at, self.tf.reduce_mean)

    def op_ReduceMax(self, node, a, at):
        return self._reduce(node, a, at, self.tf.reduce_max)

    def op_ReduceSum(self, node, a, at):
        return self._reduce(node, a, at, self.tf.reduce_sum)

    # -- shapes ---------------------------------------------------------------------------------------------
    def op_Flatten(self, node, a, at):
        x = a[0]
        axis = int(at.get("axis", 1))
        shape = self.logical_shape(x)
        if x.is_const:
            return Value(x.data.reshape(int(np.prod(shape[:axis])), -1))
        if axis == 1 and x.nhwc and shape[2] == 1 and shape[3] == 1:
            return Value(self.tf.reshape(x.data, [shape[0], shape[1]]))
        lead = int(np.prod(shape[:axis])) if axis else 1
        return Value(self.tf.reshape(self.plain(x), [lead, -1]))

    def op_Reshape(self, node, a, at):
        x, target = a[0], [int(v) for v in np.asarray(a[1].data).ravel()]
        shape = self.logical_shape(x)
        target = [shape[i] if t == 0 and not at.get("allowzero", 0) else t for i, t in enumerate(target)]
        if x.is_const:
            return Value(x.data.reshape(target))
        if x.nhwc and len(target) == 2 and target[0] == shape[0] and shape[2] == 1 and shape[3] == 1:
            return Value(self.tf.reshape(x.data, target))
        return Value(self.tf.reshape(self.plain(x), target))

    def op_Gemm(self, node, a, at):
        tf = self.tf
        x = self.plain(a[0]) if not a[0].is_const else tf.constant(a[0].data)
        if at.get("transA", 0):
            x = tf.transpose(x)
        b = a[1]
        if b.is_const:
            w = np.asarray(b.data, dtype=np.float32)
            w = w.T if at.get("transB", 0) else w
            y = tf.matmul(x, tf.constant(w))
        else:
            y = tf.matmul(x, self.plain(b), transpose_b=bool(at.get("transB", 0)))
        alpha, beta = at.get("alpha", 1.0), at.get("beta", 1.0)
        if alpha != 1.0:
            y = y * alpha
        if len(a) > 2 and a[2].data is not None:
            c = self.plain_or_const(a[2])
            y = y + (c * beta if beta != 1.0 else c)
        return Value(y)

    def op_MatMul(self, node, a, at):
        if a[0].is_const and a[1].is_const:
            return Value(a[0].data @ a[1].data)
        return Value(self.tf.matmul(self.plain_or_const(a[0]), self.plain_or_const(a[1])))

    def op_Concat(self, node, a, at):
        axis = int(at["axis"])
        if all(v.is_const for v in a):
            return Value(np.concatenate([v.data for v in a], axis=axis))
        r = max(self.rank(v) for v in a)
        axis %= r
        if r == 4 and any(v.nhwc for v in a) and all(not v.is_const for v in a):
            return Value(self.tf.concat([self.nhwc(v) for v in a], axis=TO_NHWC_AXIS[axis]), nhwc=True)
        return Value(self.tf.concat([self.plain_or_const(v) for v in a], axis=axis))

    def op_Pad(self, node, a, at):
        x = a[0]
        pads = [int(v) for v in np.asarray(a[1].data).ravel()] if len(a) > 1 else list(at["pads"])
        value = float(np.asarray(a[2].data).ravel()[0]) if len(a) > 2 and a[2].data is not None else 0.0
        mode = at.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        r = self.rank(x)
        pairs = [[pads[i], pads[i + r]] for i in range(r)]
        tf_mode = {"constant": "CONSTANT", "reflect": "REFLECT", "edge": "SYMMETRIC"}[mode]
        if mode == "edge":
            raise UnsupportedOpError(f"Pad {node.name}: mode 'edge' is not translated")
        if x.nhwc:
            pairs = [pairs[i] for i in NCHW_TO_NHWC]  # logical N, C, H, W pairs -> stored N, H, W, C
            return Value(self.tf.pad(x.data, pairs, mode=tf_mode, constant_values=value), nhwc=True)
        return Value(self.tf.pad(self.plain(x), pairs, mode=tf_mode, constant_values=value))

    def op_Transpose(self, node, a, at):
        x = a[0]
        perm = list(at.get("perm", reversed(range(self.rank(x)))))
        if x.is_const:
            return Value(np.transpose(x.data, perm))
        return Value(self.tf.transpose(self.plain(x), perm))

    def _axes(self, a, at) -> list[int]:
        if "axes" in at:
            return [int(v) for v in at["axes"]]
        return [int(v) for v in np.asarray(a[1].data).ravel()] if len(a) > 1 and a[1].data is not None else []

    def op_Squeeze(self, node, a, at):
        x, axes = a[0], self._axes(a, at)
        if x.is_const:
            return Value(np.squeeze(x.data, axis=tuple(axes)) if axes else np.squeeze(x.data))
        if x.nhwc and sorted(ax % 4 for ax in axes) == [2, 3]:
            return Value(self.tf.squeeze(x.data, axis=[1, 2]))
        return Value(self.tf.squeeze(self.plain(x), axis=axes or None))

    def op_Unsqueeze(self, node, a, at):
        x, axes = a[0], self._axes(a, at)
        if x.is_const:
            out = x.data
            for ax in sorted(axes):
                out = np.expand_dims(out, ax)
            return Value(out)
        out = self.plain(x)
        for ax in sorted(ax % (self.rank(x) + len(axes)) for ax in axes):
            out = self.tf.expand_dims(out, ax)
        return Value(out)

    def op_Shape(self, node, a, at):
        return Value(np.asarray(self.logical_shape(a[0]), dtype=np.int64))

    def op_Gather(self, node, a, at):
        if a[0].is_const and a[1].is_const:
            return Value(np.take(a[0].data, a[1].data, axis=int(at.get("axis", 0))))
        return Value(self.tf.gather(self.plain(a[0]), a[1].data, axis=int(at.get("axis", 0))))

    def op_Constant(self, node, a, at):
        from onnx import numpy_helper

        if "value" in at:
            return Value(numpy_helper.to_array(at["value"]))
        for key in ("value_float", "value_int"):
            if key in at:
                return Value(np.asarray(at[key]))
        for key in ("value_floats", "value_ints"):
            if key in at:
                return Value(np.asarray(list(at[key])))
        raise UnsupportedOpError(f"Constant {node.name}: attribute {list(at)} is not translated")

    def op_ConstantOfShape(self, node, a, at):
        from onnx import numpy_helper

        if not a[0].is_const:
            raise UnsupportedOpError(f"ConstantOfShape {node.name}: a shape computed at run time is not translated")
        value = numpy_helper.to_array(at["value"]) if "value" in at else np.zeros(1, dtype=np.float32)
        return Value(np.full([int(v) for v in np.asarray(a[0].data).ravel()], value.ravel()[0], dtype=value.dtype))

    def op_Slice(self, node, a, at):
        """ONNX Slice (opset >= 10: starts, ends, axes, steps as inputs); NHWC maps keep their layout."""
        x = a[0]
        for v in a[1:]:
            if v.data is not None and not v.is_const:
                raise UnsupportedOpError(f"Slice {node.name}: slice bounds computed at run time are not translated")
        starts, ends = (np.asarray(v.data).ravel().astype(np.int64) for v in a[1:3])
        r = self.rank(x)
        axes = np.asarray(a[3].data).ravel().astype(np.int64) if len(a) > 3 and a[3].data is not None else np.arange(len(starts))
        steps = np.asarray(a[4].data).ravel().astype(np.int64) if len(a) > 4 and a[4].data is not None else np.ones(len(starts), np.int64)
        index = [slice(None)] * r
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            # ONNX clamps out-of-range bounds (INT64_MAX means "to the end"), as Python slicing does
            index[int(ax) % r] = slice(int(st), int(en), int(sp))
        if x.is_const:
            return Value(x.data[tuple(index)])
        if x.nhwc:
            return Value(x.data[tuple(index[i] for i in NCHW_TO_NHWC)], nhwc=True)
        return Value(self.plain(x)[tuple(index)])

    def op_Cast(self, node, a, at):
        from onnx import helper

        dtype = helper.tensor_dtype_to_np_dtype(at["to"])
        if a[0].is_const:
            return Value(a[0].data.astype(dtype))
        return Value(self.tf.cast(self.t(a[0]), self.tf.as_dtype(dtype)), nhwc=a[0].nhwc)
