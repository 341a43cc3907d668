"""The parameters a facenas trial receives from NNI.

The facenas tuners send each trial::

    {
      "facenas": {"stage": "toy.evaluate", "params": {...}, "out_dir": "/.../candidates/003",
                  "step": "candidates", "index": 3, "attempt": 0,
                  "space": "toy", "space_config": {}},
      "stem/width": 16, "block/kernel_size": 5, ...      # the sample, if the trial has one
    }

The sample sits at the top level so that the NNI portal's hyper-parameter views show one column
per architecture choice (keyed like the search space it shows); the trial puts it back into the
stage's ``params["sample"]``. Parameters without the ``facenas`` envelope come from any other NNI
tuner (TPE, Random, GridSearch ... over our generated search space): they are the sample, and the
stage and its fixed parameters come from the trial command line (``--stage``, ``--params``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from facenas.errors import FacenasError

ENVELOPE_KEY = "facenas"
#: what a pipeline step's trials are: ``candidate`` -- a network the search proposes (the answer);
#: ``reference`` -- a network trained for comparison (a teacher, a uniformly narrowed baseline);
#: ``auxiliary`` -- no network to rank (data, supernet training, the search itself)
ROLES = ("candidate", "reference", "auxiliary")


@dataclasses.dataclass
class TrialSpec:
    """What one trial runs and where it writes.

    Args:
        stage: ``STAGES`` name.
        params: the stage's JSON parameters (including ``sample`` where there is one).
        out_dir: the trial's folder, or None for the default ``<experiment output>/trials/<trial id>``.
        step: pipeline step name (advisors), else ``"trials"``.
        index: index of the trial within its step.
        attempt: retry number (0 for the first run).
        space / space_config: the space the sample belongs to, so the trial can write its
            architecture description.
        role: what the step's network is (:data:`ROLES`): only a ``candidate`` trial's ``default``
            competes for the portal's best trial.
        inputs: absolute paths of earlier steps' artefacts that ``params`` refer to; the trial
            checks it can read them before its stage runs (a worker without shared storage fails fast).
        batch: the units of a batched trial (a step's ``batch`` > 1), each a dict of ``params``,
            ``out_dir``, ``index``, ``attempt``, ``inputs``; the trial runs them one after another.
    """

    stage: str
    params: dict[str, Any]
    out_dir: str | None = None
    step: str = "trials"
    index: int = 0
    attempt: int = 0
    space: str | None = None
    space_config: dict[str, Any] | None = None
    role: str = "candidate"
    inputs: list[str] | None = None
    batch: list[dict[str, Any]] | None = None

    def to_parameters(self) -> dict[str, Any]:
        """NNI parameters: the envelope, plus the sample's labels at the top level."""
        params = dict(self.params)
        sample = params.pop("sample", None)
        meta = {k: v for k, v in dataclasses.asdict(self).items() if k != "params" and v is not None}
        meta["params"] = params
        out: dict[str, Any] = {ENVELOPE_KEY: meta}
        if isinstance(sample, Mapping):
            clash = [k for k in sample if k == ENVELOPE_KEY]
            if clash:
                raise FacenasError(f"a sample label may not be called '{ENVELOPE_KEY}'")
            out.update(sample)
        elif sample is not None:
            meta["params"]["sample"] = sample
        return out


def from_parameters(
    parameters: Mapping[str, Any] | None,
    stage: str | None = None,
    params: Mapping[str, Any] | None = None,
    space: str | None = None,
    space_config: Mapping[str, Any] | None = None,
) -> TrialSpec:
    """Decode NNI parameters (with or without envelope); ``stage``/``params``/``space`` are fallbacks."""
    parameters = dict(parameters or {})
    envelope = parameters.pop(ENVELOPE_KEY, None)
    if envelope is not None:
        if not isinstance(envelope, Mapping) or "stage" not in envelope:
            raise FacenasError(f"trial parameters' '{ENVELOPE_KEY}' entry must be a dict with a 'stage'; got {envelope!r}")
        full = {**dict(params or {}), **dict(envelope.get("params") or {})}
        if parameters and "sample" not in full:
            full["sample"] = parameters
        return TrialSpec(
            stage=str(envelope["stage"]),
            params=full,
            out_dir=envelope.get("out_dir"),
            step=str(envelope.get("step", "trials")),
            index=int(envelope.get("index", 0)),
            attempt=int(envelope.get("attempt", 0)),
            space=envelope.get("space", space),
            space_config=dict(envelope.get("space_config") or space_config or {}),
            role=str(envelope.get("role", "candidate")),
            inputs=[str(p) for p in envelope.get("inputs") or []] or None,
            batch=[dict(b) for b in envelope.get("batch") or []] or None,
        )
    if not stage:
        raise FacenasError(
            "the trial's parameters carry no facenas envelope and no --stage was given: with a non-facenas tuner, "
            "run `python -m facenas.adapters.nni.trial --stage NAME [--params JSON] [--space NAME]`"
        )
    full = dict(params or {})
    if parameters:
        full["sample"] = parameters
    return TrialSpec(stage=stage, params=full, space=space, space_config=dict(space_config or {}))
