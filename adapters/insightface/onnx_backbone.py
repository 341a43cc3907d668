"""A frozen backbone from an ONNX file, callable like a torch module (distillation teachers).

InsightFace's released recognition models (``insightface.model_zoo``, e.g. ``w600k_mbf.onnx``)
take ``(B, 3, 112, 112)`` RGB images normalised as ``(x - 127.5) / 127.5`` -- the same tensors
facenas loaders produce -- and return ``(B, D)`` embeddings. :class:`OnnxBackbone` runs such a
file with onnxruntime on the CPU under ``torch.no_grad`` semantics (its outputs never require
grad), so a teacher can come from a model zoo file without any PyTorch source.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from facenas.errors import DataFormatError, require

log = logging.getLogger(__name__)


class OnnxBackbone(nn.Module):
    """Wrap an ONNX embedding model as a (frozen) ``nn.Module``.

    Args:
        path: the ``.onnx`` file.
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).

    Inputs with a fixed batch dimension are run in chunks of that size. The module has no
    parameters; ``train()`` has no effect and outputs are plain tensors on the input's device.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__()
        ort = require("onnxruntime", "loading an ONNX teacher", "pip install onnxruntime")
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise DataFormatError(self.path, "no such ONNX file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self._session = ort.InferenceSession(self.path, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise DataFormatError(self.path, f"onnxruntime cannot load it ({exc})") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise DataFormatError(self.path, f"expected one image input, found {[i.name for i in inputs]}")
        self._input = inputs[0].name
        shape = inputs[0].shape
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.input_size = tuple(int(s) if isinstance(s, int) else 112 for s in shape[2:4]) or (112, 112)
        self._output = self._session.get_outputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).numpy()
        step = self.fixed_batch or max(1, array.shape[0])
        outs = [self._session.run([self._output], {self._input: np.ascontiguousarray(array[i:i + step])})[0]
                for i in range(0, array.shape[0], step)]
        return torch.from_numpy(np.concatenate(outs, axis=0)).to(x.device)

    def extra_repr(self) -> str:
        return f"path={self.path!r}, input_size={self.input_size}, fixed_batch={self.fixed_batch}"

    def __getstate__(self) -> dict[str, Any]:  # sessions are not picklable; rebuild from the path
        state = self.__dict__.copy()
        state.pop("_session", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        ort = require("onnxruntime", "loading an ONNX teacher")
        self._session = ort.InferenceSession(self.path, providers=["CPUExecutionProvider"])
