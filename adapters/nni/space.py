"""Model-space bridge: facenas search spaces for NNI strategies and for the NNI web portal.

- :func:`to_model_space` turns any :class:`~facenas.nas.space.SearchSpace` (or registry name)
  into an ``nni.nas.nn.pytorch.ModelSpace`` (:class:`~facenas.adapters.nni.model_space.FacenasModelSpace`)
  whose mutables carry our sample labels, so NNI's multi-trial strategies (Random, GridSearch,
  RegularizedEvolution, TPE, PolicyBasedRL) search it through ``NasExperiment`` and
  ``freeze(sample)`` returns what ``space.build(sample)`` returns.
- :func:`search_space_json` writes the same space in NNI's HPO search-space format
  (``{label: {"_type": "choice", "_value": [...]}}``): what the portal shows, what NNI's HPO
  tuners (TPE, Random, GridSearch ...) sample from in an ``nnictl`` experiment, and what
  ``facenas nni space NAME`` prints. It is pure Python: no NNI import.

Every facenas choice is categorical, so every space converts; NNI's ``choice`` keeps the candidate
values themselves (ints stay ints, strings stay strings), and NNI's samples are facenas samples.
"""
from __future__ import annotations

from typing import Any, Mapping

from facenas.errors import FacenasError
from facenas.nas.space import SearchSpace, create_space


def resolve_space(space: SearchSpace | str, space_config: Mapping[str, Any] | None = None) -> SearchSpace:
    """A space object from an instance or a registry name (+ config)."""
    if isinstance(space, SearchSpace):
        if space_config:
            raise FacenasError("give either a SearchSpace object or a name with space_config, not both")
        return space
    return create_space(str(space), **dict(space_config or {}))


def search_space_json(space: SearchSpace | str, space_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """NNI HPO search space (``choice`` format) of a facenas space, keyed by our labels, in order."""
    sp = resolve_space(space, space_config)
    return {c.label: {"_type": "choice", "_value": list(c.values)} for c in sp.choices()}


def sample_from_parameters(space: SearchSpace, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The facenas sample inside NNI parameters (extra keys ignored), validated against ``space``."""
    return space.validate({label: parameters[label] for label in space.labels() if label in parameters})


def to_model_space(space: SearchSpace | str, space_config: Mapping[str, Any] | None = None):
    """An NNI ``ModelSpace`` for a facenas space (imports ``nni.nas``, which is slow)."""
    from facenas.adapters.nni.model_space import FacenasModelSpace

    sp = resolve_space(space, space_config)
    return FacenasModelSpace(space=sp.name, space_config=sp.config())


def __getattr__(name: str):
    if name == "FacenasModelSpace":  # lazy: importing it imports nni.nas
        from facenas.adapters.nni.model_space import FacenasModelSpace

        return FacenasModelSpace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
