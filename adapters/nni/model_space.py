"""``FacenasModelSpace``: any registered facenas search space as an NNI ``ModelSpace``.

Importing this module imports ``nni.nas.nn.pytorch`` (slow, ~12 s); use
:func:`facenas.adapters.nni.space.to_model_space` to get here lazily.

How it maps (NNI 3.0 model-space API):

- Each :class:`~facenas.nas.space.Choice` becomes one ``nni.choice`` mutable whose label is
  the facenas label (``stem/width``), so NNI strategies' samples are facenas samples.
  NNI refuses ``/`` inside a plain label string; a ``nni.mutable.utils.label`` built from the
  ``/``-separated parts is accepted as-is, so labels stay identical.
- ``freeze(sample)`` and NNI's "simplified" re-creation under ``model_context(sample)``
  (:meth:`create_fixed_module`) both return ``space.build(sample)``: the very module our own code
  builds (same structure; same weights under the same torch seed).
- The space is re-created from its registry name and :meth:`SearchSpace.config`, which are JSON,
  so the model space can be traced and sent to NNI trial processes (training-service engine).
"""
from __future__ import annotations

from typing import Any, Mapping

from facenas.adapters.nni import _imports

_imports.nas()

import nni  # noqa: E402  (after _imports.nas(): strategies before one-shot)
from nni.mutable import ensure_frozen  # noqa: E402
from nni.mutable.utils import label as _nni_label  # noqa: E402
from nni.nas.nn.pytorch import ModelSpace  # noqa: E402

from facenas.nas.space import SearchSpace, create_space  # noqa: E402

#: attribute set on frozen modules: the facenas sample they were built from
SAMPLE_ATTR = "facenas_sample"


def nni_label(label: str):
    """An NNI label object equal to the facenas label string (``/`` allowed through parts)."""
    return _nni_label(label.split("/"))


def _facenas_sample(space: SearchSpace, sample: Mapping[str, Any]) -> dict[str, Any]:
    """Our labels out of an NNI sample (which may also hold evaluator mutables), validated."""
    return space.validate({label: sample[label] for label in space.labels() if label in sample})


def build_frozen(space: SearchSpace, sample: Mapping[str, Any]):
    """``space.build(sample)``, tagged with the sample (``module.facenas_sample``)."""
    clean = _facenas_sample(space, sample)
    module = space.build(clean)
    setattr(module, SAMPLE_ATTR, dict(clean))
    return module


class FacenasModelSpace(ModelSpace):
    """A facenas search space seen by NNI.

    Args:
        space: registry name of the space (``"toy"``, ``"ofa"`` ...).
        space_config: the space's constructor kwargs (:meth:`SearchSpace.config`).

    The module's own ``forward`` runs the network of NNI's dry-run sample (each choice's first
    candidate), as NNI's model spaces do for sanity checks; it is not a supernet.
    """

    def __init__(self, space: str, space_config: dict[str, Any] | None = None):
        super().__init__()
        self.facenas_space = create_space(space, **(space_config or {}))
        dry_run: dict[str, Any] = {}
        for choice in self.facenas_space.choices():
            mutable = self.add_mutable(nni.choice(nni_label(choice.label), list(choice.values)))
            dry_run[choice.label] = ensure_frozen(mutable)
        self.network = self.facenas_space.build(dry_run)

    @classmethod
    def from_space(cls, space: SearchSpace) -> "FacenasModelSpace":
        return cls(space=space.name, space_config=space.config())

    @classmethod
    def create_fixed_module(cls, sample: dict, space: str, space_config: dict[str, Any] | None = None):  # type: ignore[override]
        # NNI calls this instead of __init__ inside model_context(sample) (SimplifiedModelSpace).
        return build_frozen(create_space(space, **(space_config or {})), sample)

    def freeze(self, sample: dict):  # type: ignore[override]
        return build_frozen(self.facenas_space, sample)

    def forward(self, x):
        return self.network(x)
