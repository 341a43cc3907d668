"""Pass/fail thresholds on an export's own checks: a file that fails them is not written.

An export compares the exported file with the torch model on the same faces
(:func:`~facenas.adapters.runtime.onnx_export.compare`). Reporting the figures is not enough: an
int8 file that maps every face to one embedding still has a finite "max |diff|" and used to be
written with exit code 0. :func:`check_export` turns the figures into a verdict:

* **cosine parity**: the minimum cosine between the file's and the torch model's embedding of
  the same face (float32 files: ~1.0; int8: direction kept within quantisation noise);
* **spread**: how much the file's (L2-normalised) embeddings vary across *different* faces,
  relative to the torch model's -- a collapsed network has a spread of ~0 while its per-face
  errors can look small;
* **accuracy change** (int8 with a ``.bin``): int8 verification accuracy minus float32's.

A failure raises :class:`ExportCheckError` (exit code 3: the command ran, its product is bad)
naming the figure, its value and the threshold.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .onnx_export import ExportError


class ExportCheckError(ExportError):
    """An exported model fails its parity / spread / accuracy threshold."""

    exit_code = 3


@dataclasses.dataclass
class ExportThresholds:
    """Limits an exported file must meet (``facenas export --min-cosine / --min-spread / --max-accuracy-drop``).

    Args:
        min_cosine: minimum per-face cosine to the torch model; ``None``: 0.999 for float32 files,
            0.9 for int8 ones.
        min_spread: minimum ratio of the file's embedding spread across faces to the torch model's.
        max_accuracy_drop: largest allowed float32 -> int8 verification-accuracy drop (``.bin`` given).
    """

    min_cosine: float | None = None
    min_spread: float = 0.5
    max_accuracy_drop: float = 0.05

    def cosine_for(self, int8: bool) -> float:
        if self.min_cosine is not None:
            return float(self.min_cosine)
        return 0.9 if int8 else 0.999


def embedding_spread(embeddings: np.ndarray) -> float:
    """Mean over dimensions of the std across faces of the L2-normalised embeddings (0: all faces alike)."""
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-12)
    return float(e.std(axis=0).mean())


def spread_ratio(reference: np.ndarray, other: np.ndarray) -> float:
    """``embedding_spread(other) / embedding_spread(reference)`` (1: faces as far apart as in the torch model)."""
    ref = embedding_spread(reference)
    return embedding_spread(other) / ref if ref > 0 else 1.0


def check_export(label: str, parity: dict[str, Any] | None, spread: float | None, accuracy: dict[str, Any] | None,
                 thresholds: ExportThresholds, int8: bool) -> list[str]:
    """The failed checks of one exported file as sentences (empty: it passes)."""
    failures = []
    if parity is not None:
        limit = thresholds.cosine_for(int8)
        if parity["min_cosine"] < limit:
            failures.append(f"{label}: min cosine to the torch model {parity['min_cosine']:.4f} on "
                            f"{parity['num_faces']} faces is below {limit} (--min-cosine)")
    if spread is not None and spread < thresholds.min_spread:
        failures.append(f"{label}: embedding spread across faces is {spread:.3g} of the torch model's, below "
                        f"{thresholds.min_spread} (--min-spread): different faces get (nearly) one embedding")
    if accuracy is not None and -accuracy["change"] > thresholds.max_accuracy_drop:
        failures.append(f"{label}: accuracy on {accuracy['bin']} drops {accuracy['float32_acc']:.4f} -> "
                        f"{accuracy['int8_acc']:.4f} ({accuracy['change']:+.4f}), more than "
                        f"{thresholds.max_accuracy_drop} (--max-accuracy-drop)")
    return failures


def raise_on_failures(failures: list[str], path: str, written: bool) -> None:
    """Raise :class:`ExportCheckError` listing ``failures`` (no-op when there are none)."""
    if not failures:
        return
    state = "was removed" if written else "was not written"
    raise ExportCheckError(f"export check failed, {path} {state}: " + "; ".join(failures)
                           + " (inspect with --no-check, which writes the file unchecked)")
