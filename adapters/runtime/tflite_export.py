"""TFLite export, fully offline: torch -> ONNX -> NHWC TensorFlow rebuild -> TFLite flatbuffer.

The TensorFlow graph is rebuilt by :mod:`.tf_rebuild` (OFA's approach: a native NHWC network
with the weights copied, not a transposing node-by-node conversion); the TFLite converter runs
in-process on a ``tf.function`` (nothing is downloaded). The file takes ``(1, H, W, 3)`` NHWC
float32 RGB normalised as InsightFace does and returns ``(1, D)`` float32 embeddings.

Checks: float32 parity against the torch model in the TFLite interpreter on real faces; with
``int8=True``, post-training full-integer quantisation (weights and activations int8, float
input/output) calibrated on representative faces from a ``.rec``, its embedding parity, and --
when a ``.bin`` is given -- the verification-accuracy change float32 -> int8 (OFA's paper saw
large drops from post-training quantisation).

TensorFlow is an optional extra (``pip install facenas[tflite]``), imported only here.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from torch import nn

from facenas.errors import FacenasError, require

log = logging.getLogger(__name__)

INSTALL = "pip install 'facenas[tflite]'  (tensorflow-cpu)"


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return require("tensorflow", "TFLite export and latency", INSTALL)


def onnx_static(module: nn.Module, input_chw: tuple[int, int, int]):
    """The module exported to an in-memory ONNX model with batch fixed to 1 (shapes all static)."""
    import onnx

    from .graph_passes import default_passes
    from .onnx_export import torch_export

    with tempfile.TemporaryDirectory(prefix="facenas-tfl-") as tmp:
        path = Path(tmp) / "model.onnx"
        torch_export(module.eval(), path, tuple(input_chw), dynamic_batch=False, passes=default_passes("tflite"))
        return onnx.load(os.fspath(path))


def onnx_to_tflite(onnx_model: Any, layout: str = "nhwc", representative: Iterable[np.ndarray] | None = None) -> bytes:
    """Convert an ONNX model (static shapes) to a TFLite flatbuffer through the TF rebuild.

    Args:
        onnx_model: an ``onnx.ModelProto`` with one ``(1, C, H, W)`` input.
        layout: ``nhwc`` (native) or ``nchw`` (naive transposing conversion, for comparison).
        representative: NHWC float32 ``(1, H, W, C)`` arrays; when given, the model is quantised to
            int8 (weights and activations; input and output stay float32).
    """
    tf = _tf()
    from .tf_rebuild import OnnxToTF

    builder = OnnxToTF(onnx_model, layout)
    fn = builder.function()
    concrete = fn.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], fn)
    if representative is not None:
        samples = [np.asarray(s, dtype=np.float32) for s in representative]
        if layout == "nchw":
            samples = [np.transpose(s, (0, 3, 1, 2)) for s in samples]

        def gen():
            for s in samples:
                yield [s]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        return converter.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        raise FacenasError(f"the TFLite converter failed on the rebuilt graph: {type(exc).__name__}: {exc}") from exc


def torch_to_tflite(module: nn.Module, input_chw: tuple[int, int, int], layout: str = "nhwc",
                    representative: Iterable[np.ndarray] | None = None) -> bytes:
    """A torch module (batch-1 input ``(C, H, W)``) as TFLite bytes; see :func:`onnx_to_tflite`."""
    return onnx_to_tflite(onnx_static(module, input_chw), layout, representative)


# -- running ------------------------------------------------------------------------------------------
def interpreter(model: str | os.PathLike | bytes, threads: int = 1):
    """A ``tf.lite.Interpreter`` (XNNPACK for float models, as on phones) with ``threads`` threads."""
    tf = _tf()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(model, bytes):
            interp = tf.lite.Interpreter(model_content=model, num_threads=int(threads))
        else:
            interp = tf.lite.Interpreter(model_path=os.fspath(model), num_threads=int(threads))
    interp.allocate_tensors()
    return interp


def tflite_runner(model: str | os.PathLike | bytes, threads: int = 1, seed: int = 0):
    """A zero-argument runner of one batch-1 inference, and the input shape (for latency)."""
    interp = interpreter(model, threads)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    shape = [int(v) for v in inp["shape"]]
    x = np.random.default_rng(seed).standard_normal(shape).astype(inp["dtype"])
    interp.set_tensor(inp["index"], x)

    def run():
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"])

    return run, shape


class TFLiteEmbedder:
    """Callable embedding model over a TFLite file: NCHW normalised float32 batch -> ``(B, D)``.

    Runs one image at a time (the files have batch 1), so it plugs into
    :class:`~facenas.adapters.insightface.evaluate.VerificationEvaluator` like a torch model.
    """

    def __init__(self, model: str | os.PathLike | bytes, threads: int = 2):
        self.interp = interpreter(model, threads)
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        shape = [int(v) for v in self.inp["shape"]]
        self.nhwc = shape[-1] in (1, 3) and shape[1] not in (1, 3)
        self.input_size = (shape[1], shape[2]) if self.nhwc else (shape[2], shape[3])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        if self.nhwc:
            batch = np.transpose(batch, (0, 2, 3, 1))
        outs = []
        for i in range(batch.shape[0]):
            self.interp.set_tensor(self.inp["index"], np.ascontiguousarray(batch[i:i + 1]))
            self.interp.invoke()
            outs.append(self.interp.get_tensor(self.out["index"]).copy())
        return np.concatenate(outs)


# -- export ---------------------------------------------------------------------------------------------
def representative_faces(source: str | os.PathLike | None, n: int, size: tuple[int, int]) -> tuple[list[np.ndarray], str]:
    """``n`` NHWC float32 batch-1 arrays of real faces (default source: ``celeba299`` in ``$FACENAS_SHARED_DATA``)."""
    from facenas.utils.paths import shared_data_dir

    from .faces import load_faces, normalise

    if source is None:
        source = shared_data_dir() / "celeba299"
        if not Path(source).exists():
            raise FacenasError(f"int8 calibration needs representative faces: {source} does not exist; "
                               "give --calibration with a .rec folder of aligned faces")
    faces = load_faces(source, n, seed=1)
    x = normalise(faces, None if faces.shape[1:3] == tuple(size) else tuple(size))
    return [np.transpose(x[i:i + 1], (0, 2, 3, 1)).copy() for i in range(len(x))], os.fspath(source)


def export_tflite(model: nn.Module, path: str | os.PathLike, input_size: tuple[int, int] = (112, 112),
                  native_size: tuple[int, int] | None = None, check: bool = True, int8: bool = False,
                  calibration: str | os.PathLike | None = None, calibration_images: int = 200,
                  eval_bin: str | os.PathLike | None = None, faces: np.ndarray | None = None,
                  layout: str = "nhwc", thresholds: Any = None) -> dict[str, Any]:
    """Export a backbone to TFLite (float32, or int8 with ``int8=True``) and check it.

    Args:
        model: a facenas backbone (normalised RGB NCHW -> embeddings).
        path: the ``.tflite`` file (written atomically).
        input_size: the file's input size (112x112 aligned faces); ``native_size`` as in
            :func:`~facenas.adapters.runtime.onnx_export.export_onnx`.
        check: float32 parity in the TFLite interpreter on real faces.
        int8: post-training int8 quantisation calibrated on ``calibration_images`` faces from
            ``calibration`` (a ``.rec`` folder; default ``celeba299`` in ``$FACENAS_SHARED_DATA``).
        eval_bin: a ``.bin`` set; with ``int8`` the accuracy of the float32 and the int8 model on it
            is reported (InsightFace 10-fold protocol with flip-test).
        thresholds: an :class:`~facenas.adapters.runtime.export_checks.ExportThresholds` (default:
            its defaults); with ``check``, a file below them is not written and
            :class:`~facenas.adapters.runtime.export_checks.ExportCheckError` names the figure.

    Returns:
        a dict with ``out``, ``bytes``, ``parity`` (float32), and with int8 ``int8_parity`` and
        ``accuracy`` (``float32_acc``, ``int8_acc``, ``change``).
    """
    from facenas.utils.io import atomic_write

    from .models import deployable, native_input_size
    from .onnx_export import compare

    model = model.eval()
    native = tuple(native_size) if native_size is not None else native_input_size(model, tuple(input_size))
    wrapped = deployable(model, tuple(input_size), native)
    proto = onnx_static(wrapped, (3, *input_size))
    float_bytes = onnx_to_tflite(proto, layout)
    result: dict[str, Any] = {"out": os.fspath(path), "layout": layout, "int8": bool(int8),
                              "float32_bytes": len(float_bytes)}
    final = float_bytes
    if int8:
        reps, source = representative_faces(calibration, calibration_images, tuple(input_size))
        final = onnx_to_tflite(proto, layout, reps)
        result.update(calibration=source, calibration_images=len(reps), int8_bytes=len(final))
    if check:
        ref, x, source = _reference(wrapped, tuple(input_size), faces)
        report = compare(ref, TFLiteEmbedder(float_bytes)(x), "tflite float32", source)
        log.info("%s", report.line())
        result["parity"] = report.to_dict()
        if int8:
            out8 = TFLiteEmbedder(final)(x)
            report8 = compare(ref, out8, "tflite int8", source)
            log.info("%s", report8.line())
            result["int8_parity"] = report8.to_dict()
            result["int8_spread_ratio"] = _spread_ratio(ref, out8)
    if int8 and eval_bin is not None:
        result["accuracy"] = int8_accuracy_change(float_bytes, final, eval_bin)
    if check:
        _enforce(result, thresholds, int8, os.fspath(path))
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fh.write(final)
    result["bytes"] = len(final)
    log.info("wrote %s (%.2f MB, %s)", path, len(final) / 1e6, "int8" if int8 else "float32")
    return result


def _spread_ratio(reference: np.ndarray, int8_out: np.ndarray) -> float:
    from .export_checks import spread_ratio

    ratio = spread_ratio(reference, int8_out)
    log.info("tflite int8 embedding spread across %d faces: %.3g of the torch model's", len(reference), ratio)
    return ratio


def _enforce(result: dict[str, Any], thresholds: Any, int8: bool, path: str) -> None:
    """Raise ``ExportCheckError`` (nothing written) when the float32 or int8 file fails its thresholds."""
    from .export_checks import ExportThresholds, check_export, raise_on_failures

    thresholds = thresholds or ExportThresholds()
    failures = check_export("tflite float32", result.get("parity"), None, None, thresholds, int8=False)
    if int8:
        failures += check_export("tflite int8", result.get("int8_parity"), result.get("int8_spread_ratio"),
                                 result.get("accuracy"), thresholds, int8=True)
    result["checks"] = {"passed": not failures, "failures": failures}
    raise_on_failures(failures, path, written=False)


def _reference(model: nn.Module, input_size: tuple[int, int], faces: np.ndarray | None):
    import torch

    from .faces import default_faces, normalise
    from .onnx_export import _faces_or_random

    faces, source = _faces_or_random(faces, None, input_size, default_faces)
    x = normalise(faces, None if faces.shape[1:3] == tuple(input_size) else tuple(input_size))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    return ref, x, source


def int8_accuracy_change(float_model: bytes | str, int8_model: bytes | str, bin_path: str | os.PathLike,
                         threads: int = 2) -> dict[str, Any]:
    """Verification accuracy of the float32 and int8 TFLite models on a ``.bin`` (flip-test, 10 folds)."""
    from facenas.adapters.insightface.evaluate import VerificationEvaluator

    ev = VerificationEvaluator({"set": bin_path}, batch_size=64, flip=True)
    fp = TFLiteEmbedder(float_model, threads)
    q = TFLiteEmbedder(int8_model, threads)
    size = fp.input_size
    if tuple(ev.sets["set"].image_size) != tuple(size):
        ev.image_size = size
    f_res = ev.evaluate_set(fp, "set")
    q_res = ev.evaluate_set(q, "set")
    out = {"bin": os.fspath(bin_path), "float32_acc": float(f_res.accuracy), "float32_acc_std": float(f_res.accuracy_std),
           "int8_acc": float(q_res.accuracy), "int8_acc_std": float(q_res.accuracy_std),
           "change": float(q_res.accuracy - f_res.accuracy)}
    log.info("%s: float32 acc %.4f, int8 acc %.4f (change %+.4f)", bin_path, out["float32_acc"], out["int8_acc"],
             out["change"])
    return out
