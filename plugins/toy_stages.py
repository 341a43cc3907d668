"""Stages over the toy space, for testing the NNI plumbing without training anything.

They mimic the shape of a real method's pipeline (supernet training -> candidate evaluations ->
one-shot search -> retrain of the chosen architectures) in milliseconds:

- ``toy.train_supernet`` reports per-epoch intermediate values and writes a small "supernet"
  file whose path it returns as ``checkpoint``;
- ``toy.evaluate`` scores a toy sample with a known optimum (the largest network, score 1.0) and
  reports a few intermediate values; ``fail_if`` in the parameters injects a failure, a
  ``supernet`` parameter must name an existing supernet file (so artefact passing between
  stages is checked), and ``sleep_s`` keeps each epoch busy that long (a trial a test can
  catch running, to stop it mid-way);
- ``toy.search`` is a one-shot-like search: per epoch it scores a few samples, reports the best
  so far as an intermediate result, and returns the top-k architectures (also ranking the
  candidate results it is given).
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping

from facenas.errors import FacenasError
from facenas.nas.report import Reporter
from facenas.nas.results import ranked_result
from facenas.nas.space import create_space
from facenas.nas.stages import STAGES, auxiliary_stage
from facenas.utils.io import write_json
from facenas.utils.seed import make_rng

SUPERNET_FORMAT = "facenas.toy_supernet/1"


def toy_score(sample: Mapping[str, Any]) -> float:
    """Known-optimum objective on the toy space: 1.0 at the largest sample, lower elsewhere."""
    space = create_space("toy")
    s = space.validate(sample)
    score = 0.0
    for choice in space.choices():
        score += choice.index(s[choice.label]) / (len(choice.values) - 1)
    return score / len(space.choices())


def _check_supernet(path: str) -> None:
    if not os.path.isfile(path):
        raise FacenasError(f"supernet file {path} does not exist (the supernet step's checkpoint was expected here)")
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if data.get("format") != SUPERNET_FORMAT:
        raise FacenasError(f"{path}: not a toy supernet file (format {data.get('format')!r}, expected {SUPERNET_FORMAT!r})")


@STAGES.register("toy.train_supernet")
@auxiliary_stage
def toy_train_supernet(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    epochs = int(params.get("epochs", 3))
    loss = 1.0
    for epoch in range(1, epochs + 1):
        loss = 0.5**epoch
        reporter.intermediate({"default": 1.0 - loss, "loss": loss, "epoch": epoch})
    path = reporter.out_dir / "supernet.json"
    write_json(path, {"format": SUPERNET_FORMAT, "space": "toy", "epochs": epochs})
    return {"default": 1.0 - loss, "loss": loss, "checkpoint": str(path)}


@STAGES.register("toy.evaluate")
def toy_evaluate(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    sample = dict(params["sample"])
    if params.get("fail_if") and all(sample.get(k) == v for k, v in params["fail_if"].items()):
        raise FacenasError(f"injected failure for sample {sample}")
    if params.get("supernet"):
        _check_supernet(str(params["supernet"]))
    space = create_space("toy")
    score = toy_score(sample)
    epochs = int(params.get("epochs", 3))
    for epoch in range(1, epochs + 1):
        time.sleep(float(params.get("sleep_s", 0)))
        reporter.intermediate({"default": score * epoch / epochs, "epoch": epoch})
    return {"default": score, "toy_score": score, "mflops": space.flops(sample) / 1e6, "params_m": space.params(sample) / 1e6}


@STAGES.register("toy.search")
@auxiliary_stage
def toy_search(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Rank candidates (``candidates``: trial records with ``arch``/``metrics``) and explore more."""
    space = create_space("toy")
    if params.get("supernet"):
        _check_supernet(str(params["supernet"]))
    scored: dict[tuple, tuple[float, dict[str, Any]]] = {}
    for cand in params.get("candidates") or []:
        sample = (cand.get("arch") or {}).get("sample") or (cand.get("params") or {}).get("sample")
        default = (cand.get("metrics") or {}).get("default")
        if sample is None or default is None:
            raise FacenasError(f"candidate record has no sample or no metrics.default: {sorted(cand)}")
        s = space.validate(sample)
        scored[tuple(sorted(s.items()))] = (float(default), s)
    rng = make_rng(int(params.get("seed", 0)))
    epochs, per_epoch = int(params.get("epochs", 3)), int(params.get("samples_per_epoch", 2))
    for epoch in range(1, epochs + 1):
        for _ in range(per_epoch):
            s = space.sample(rng)
            scored.setdefault(tuple(sorted(s.items())), (toy_score(s), s))
        best = max(v[0] for v in scored.values())
        reporter.intermediate({"default": best, "explored": len(scored), "epoch": epoch})
    ranked = sorted(scored.values(), key=lambda v: v[0], reverse=True)[: int(params.get("top_k", 2))]
    result = ranked_result({"default": ranked[0][0], "best_score": ranked[0][0], "explored": float(len(scored))},
                           reporter.out_dir, [(space.describe(s), {"score": score}) for score, s in ranked])
    write_json(reporter.out_dir / "architectures.json", result["architectures"])
    return result
