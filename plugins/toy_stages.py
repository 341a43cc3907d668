"""Stages over the toy space, for testing the NNI plumbing without training anything.

``toy.evaluate`` scores a toy sample with a known optimum (the largest network, score 1.0) and
reports a few intermediate values; ``fail_if`` in the parameters injects a failure.
"""
from __future__ import annotations

from typing import Any, Mapping

from facenas.errors import FacenasError
from facenas.plugins.report import Reporter
from facenas.plugins.space import create_space
from facenas.plugins.stages import STAGES


def toy_score(sample: Mapping[str, Any]) -> float:
    """Known-optimum objective on the toy space: 1.0 at the largest sample, lower elsewhere."""
    space = create_space("toy")
    s = space.validate(sample)
    score = 0.0
    for choice in space.choices():
        score += choice.index(s[choice.label]) / (len(choice.values) - 1)
    return score / len(space.choices())


@STAGES.register("toy.evaluate")
def toy_evaluate(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    sample = dict(params["sample"])
    if params.get("fail_if") and all(sample.get(k) == v for k, v in params["fail_if"].items()):
        raise FacenasError(f"injected failure for sample {sample}")
    space = create_space("toy")
    score = toy_score(sample)
    epochs = int(params.get("epochs", 3))
    for epoch in range(1, epochs + 1):
        reporter.intermediate({"default": score * epoch / epochs, "epoch": epoch})
    return {"default": score, "toy_score": score, "mflops": space.flops(sample) / 1e6, "params_m": space.params(sample) / 1e6}
