"""ONNX export that ``insightface.model_zoo`` loads as a recognition model, with a parity check.

InsightFace 2.1's ``model_zoo.get_model(path)`` routes an ONNX file by its first input's shape:
a square ``H == W >= 112`` with ``H % 16 == 0`` (and fewer than 5 outputs) becomes an
``ArcFaceONNX``. ``ArcFaceONNX`` then guesses the normalisation from the names of the graph's
first 8 nodes: both a ``Sub*``/``_minus*`` and a ``Mul*``/``_mul*`` node mean an MXNet model that
normalises inside the graph (``input_mean=0, input_std=1``); otherwise it feeds
``(x - 127.5) / 127.5``. ``get_feat`` takes aligned BGR ``uint8`` faces and swaps them to RGB
(``cv2.dnn.blobFromImages(..., swapRB=True)``). facenas backbones take exactly that tensor --
RGB, ``(x/255 - 0.5)/0.5`` -- so the exported graph has no normalisation of its own, and
:func:`export_onnx` checks that no node names trip the MXNet guess.

A network trained at another resolution (the 64x64 CPU-scale protocol) is exported behind
:class:`~facenas.adapters.runtime.models.InputResize`, so the file still takes 112x112 faces.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from facenas.errors import FacenasError, require

from .models import deployable, native_input_size

log = logging.getLogger(__name__)

#: names the exported graph uses
INPUT_NAME = "input.1"
OUTPUT_NAME = "embedding"
#: ONNX opset (HardSwish needs 14; onnxruntime >= 1.17 and insightface handle 17)
OPSET = 17


class ExportError(FacenasError):
    """An exported model does not meet the runtime's conventions or fails its parity check."""


@dataclasses.dataclass
class ParityReport:
    """Embedding differences between the torch model and an exported model on the same faces."""

    runtime: str
    num_faces: int
    faces_source: str
    max_abs_diff: float
    max_rel_diff: float  # max |a-b| / max |a|
    min_cosine: float
    insightface_max_abs_diff: float | None = None  # through ArcFaceONNX.get_feat on BGR uint8 faces

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        text = (f"{self.runtime} parity on {self.num_faces} faces ({self.faces_source}): max |diff| "
                f"{self.max_abs_diff:.3g} (relative {self.max_rel_diff:.3g}), min cosine {self.min_cosine:.6f}")
        if self.insightface_max_abs_diff is not None:
            text += f"; insightface.model_zoo get_feat max |diff| {self.insightface_max_abs_diff:.3g}"
        return text


def compare(reference: np.ndarray, other: np.ndarray, runtime: str, faces_source: str,
            insightface_diff: float | None = None) -> ParityReport:
    ref = reference.astype(np.float64)
    oth = other.astype(np.float64)
    diff = np.abs(ref - oth)
    cos = (ref * oth).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(oth, axis=1) + 1e-12)
    return ParityReport(runtime, int(ref.shape[0]), faces_source, float(diff.max()),
                        float(diff.max() / (np.abs(ref).max() + 1e-12)), float(cos.min()), insightface_diff)


def insightface_conventions(onnx_model: Any) -> list[str]:
    """Problems that would make ``insightface.model_zoo`` mis-route or mis-normalise the model."""
    problems = []
    graph = onnx_model.graph
    if len(graph.output) != 1:
        problems.append(f"{len(graph.output)} outputs (ArcFaceONNX needs exactly 1)")
    dims = graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.dim_value > 0 else (d.dim_param or "?") for d in dims]
    if len(shape) != 4 or shape[1] != 3:
        problems.append(f"input shape {shape} is not (batch, 3, H, W)")
    else:
        h, w = shape[2], shape[3]
        if not (isinstance(h, int) and h == w and h >= 112 and h % 16 == 0):
            problems.append(f"input {h}x{w} is not square, >= 112 and a multiple of 16 (model_zoo routes by it)")
    names = [n.name for n in graph.node[:8]]
    if any(n.startswith(("Sub", "_minus")) for n in names) and any(n.startswith(("Mul", "_mul")) for n in names):
        problems.append(f"first node names {names} make ArcFaceONNX assume in-graph normalisation (mean 0, std 1)")
    return problems


def _rename_nodes(onnx_model: Any) -> None:
    """Give nodes ``/``-prefixed names, which never match ArcFaceONNX's MXNet-normalisation guess."""
    for i, node in enumerate(onnx_model.graph.node):
        if not node.name or node.name.startswith(("Sub", "_minus", "Mul", "_mul")):
            node.name = f"/{node.op_type}_{i}"


def torch_export(model: nn.Module, path: str | os.PathLike, input_size: tuple[int, ...], dynamic_batch: bool = True,
                 opset: int = OPSET, passes: Sequence[str] | None = None) -> None:
    """``torch.onnx.export`` (TorchScript exporter: the dynamo one needs onnxscript), then graph passes.

    ``input_size`` is ``(H, W)`` of a 3-channel image or a full ``(C, H, W)`` (latency blocks).
    ``passes``: the :mod:`.graph_passes` to run on the file (exact rewrites into forms the runtime
    runs faster); ``None`` = onnxruntime's defaults, ``()`` = the plain export.
    """
    shape = tuple(input_size) if len(input_size) == 3 else (3, *input_size)
    example = torch.zeros(1, *shape)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        with torch.no_grad():
            torch.onnx.export(model, (example,), os.fspath(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    _run_graph_passes(path, passes)


def _run_graph_passes(path: str | os.PathLike, passes: Sequence[str] | None) -> None:
    """Rewrite the ONNX file at ``path`` with ``passes`` (default: onnxruntime's), in place."""
    from .graph_passes import apply_passes, default_passes

    passes = default_passes("onnxruntime") if passes is None else tuple(passes)
    if not passes:
        return
    import onnx

    proto = onnx.load(os.fspath(path))
    if any(apply_passes(proto, passes).values()):
        onnx.save(proto, os.fspath(path))


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: tuple[int, int] = (112, 112),
                native_size: tuple[int, int] | None = None, dynamic_batch: bool = True, check: bool = True,
                faces: np.ndarray | None = None, faces_source: str | None = None, metadata: dict | None = None,
                opset: int = OPSET, passes: Sequence[str] | None = None) -> ParityReport | None:
    """Export a facenas backbone to ONNX for ``insightface.model_zoo`` and check parity.

    Args:
        model: a backbone mapping normalised RGB ``(B, 3, H, W)`` to ``(B, D)`` embeddings.
        path: the ``.onnx`` file to write (atomically).
        input_size: the file's input size (InsightFace's aligned faces: 112x112).
        native_size: the size the network runs at (default: from its checkpoint/description);
            a different size puts the data layer's resize in front of it.
        dynamic_batch: a symbolic batch axis (``batch``) instead of 1.
        check: run the parity check (torch vs onnxruntime, and insightface's ``get_feat``).
        faces: uint8 ``(N, 112, 112, 3)`` RGB faces for the check (default: from the real-data folder, ``$FACENAS_SHARED_DATA``).
        metadata: extra ``metadata_props`` (JSON-encoded) stored in the file.
        passes: graph passes run on the export (:mod:`.graph_passes`; ``None``: onnxruntime's
            defaults, e.g. PReLU as ``Max(x, 0) + a * Min(x, 0)``; ``()``: none). They are exact, and
            the parity check runs on the rewritten file.

    Returns:
        the :class:`ParityReport` (logged too), or ``None`` when ``check`` is off.
    """
    onnx = require("onnx", "ONNX export", "pip install onnx onnxruntime")
    from facenas.utils.io import atomic_write

    model = model.eval()
    native = tuple(native_size) if native_size is not None else native_input_size(model, tuple(input_size))
    wrapped = deployable(model, tuple(input_size), native)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.export.tmp")
    try:
        torch_export(wrapped, tmp, tuple(input_size), dynamic_batch, opset, passes)
        proto = onnx.load(os.fspath(tmp))
    finally:
        if tmp.exists():
            tmp.unlink()
    _rename_nodes(proto)
    meta = {"producer": "facenas", "input_mean": "127.5", "input_std": "127.5", "color": "RGB",
            "input_size": json.dumps(list(input_size)), "native_input_size": json.dumps(list(native))}
    spec = getattr(model, "facenas_network", None)
    if spec is not None:
        meta["facenas_network"] = json.dumps(spec)
    for k, v in (metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(proto)
    problems = insightface_conventions(proto) if tuple(input_size)[0] >= 112 else []
    if problems:
        raise ExportError(f"{path}: the export would not load as an InsightFace recognition model: {'; '.join(problems)}")
    with atomic_write(path, "wb") as fh:
        fh.write(proto.SerializeToString())
    log.info("wrote %s (%.1f MB, opset %d, input %s, %s batch)", path, path.stat().st_size / 1e6, opset,
             "x".join(map(str, input_size)), "dynamic" if dynamic_batch else "fixed")
    if not check:
        return None
    report = check_onnx_parity(wrapped, path, tuple(input_size), faces, faces_source)
    log.info("%s", report.line())
    return report


def check_onnx_parity(model: nn.Module, path: str | os.PathLike, input_size: tuple[int, int] = (112, 112),
                      faces: np.ndarray | None = None, faces_source: str | None = None) -> ParityReport:
    """Embeddings of ``model`` (torch, at ``input_size``) vs the ONNX file, on real faces when available.

    Also loads the file with ``insightface.model_zoo.get_model`` (when insightface is installed)
    and compares ``ArcFaceONNX.get_feat`` on the same faces given as BGR ``uint8``.
    """
    ort = require("onnxruntime", "the ONNX parity check")
    from .faces import default_faces, normalise

    faces, source = _faces_or_random(faces, faces_source, input_size, default_faces)
    x = normalise(faces, None if faces.shape[1:3] == tuple(input_size) else tuple(input_size))
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    if_diff = None
    if faces.shape[1:3] == tuple(input_size) and tuple(input_size)[0] >= 112:
        try:
            if_diff = _insightface_diff(path, faces, ref)
        except ImportError:
            log.info("insightface is not installed: skipped the model_zoo check")
    report = compare(ref, out, "onnxruntime", source, if_diff)
    return report


def _insightface_diff(path: str | os.PathLike, faces_rgb: np.ndarray, ref: np.ndarray) -> float:
    import insightface  # noqa: F401 - ImportError handled by the caller

    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    zoo = get_model(os.fspath(path), providers=["CPUExecutionProvider"])
    if not isinstance(zoo, ArcFaceONNX):
        raise ExportError(f"insightface.model_zoo.get_model({path}) returned {type(zoo).__name__}, not ArcFaceONNX")
    if (zoo.input_mean, zoo.input_std) != (127.5, 127.5):
        raise ExportError(f"ArcFaceONNX assumed input_mean={zoo.input_mean}, input_std={zoo.input_std} for {path}; "
                          "expected 127.5 / 127.5")
    bgr = [np.ascontiguousarray(f[:, :, ::-1]) for f in faces_rgb]
    feats = zoo.get_feat(bgr)
    return float(np.abs(feats.astype(np.float64) - ref.astype(np.float64)).max())


def _faces_or_random(faces, faces_source, input_size, default_faces):
    if faces is not None:
        return faces, faces_source or "given faces"
    faces, source = default_faces()
    if faces is None:
        log.warning("%s", source)
        rng = np.random.default_rng(0)
        faces = rng.integers(0, 256, size=(8, *input_size, 3), dtype=np.uint8)
        source = "random uint8 images (real faces not found)"
    return faces, source
