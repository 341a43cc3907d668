"""The one shape of a stage's result, and the file names every method writes.

Every stage returns a JSON dict of metrics (it travels through NNI). Where a stage yields
architectures, the dict holds them the same way for every method:

* ``arch``: the chosen architecture's ``facenas.arch/1`` description (a dict, never a path);
* ``arch_path``: the file it is saved at (``arch.json`` in the stage's folder), which the next
  step can take as its ``arch`` parameter (``${search.result.arch_path}``);
* ``architectures``: every candidate, best first, each ``{"sample", "arch", "arch_path", ...}``.

A training run (engine.train, a supernet, a search) writes the same files in its folder:
:data:`CHECKPOINT` (resumable state), :data:`FINAL` (its final metrics), :data:`METRICS` (one JSON
line per log step / epoch / the end) and :data:`CONFIG` (the resolved config).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

CHECKPOINT = "checkpoint.pt"
FINAL = "final.json"
METRICS = "train_metrics.jsonl"
CONFIG = "config.json"
ARCH = "arch.json"


def arch_entry(description: Mapping[str, Any], path: str | os.PathLike, **extra: Any) -> dict[str, Any]:
    """Save ``description`` (``facenas.arch/1``) at ``path``; return ``{"sample", "arch", "arch_path", **extra}``."""
    from facenas.utils.io import write_json

    from .space import ARCH_FORMAT

    if description.get("format") != ARCH_FORMAT:
        raise ValueError(f"not a {ARCH_FORMAT} description: {dict(description)}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(path, dict(description))
    return {"sample": dict(description["sample"]), "arch": dict(description), "arch_path": str(path), **extra}


def with_architectures(metrics: Mapping[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``metrics`` plus ``architectures`` (best first) and the best one's ``arch`` / ``arch_path``."""
    out = dict(metrics)
    out["architectures"] = entries
    if entries:
        out["arch"], out["arch_path"] = entries[0]["arch"], entries[0]["arch_path"]
    return out


def ranked_result(metrics: Mapping[str, Any], folder: str | os.PathLike,
                  ranked: list[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> dict[str, Any]:
    """A search's result from its ranked ``(description, extra)`` pairs, best first: each saved as
    ``top<i>_arch.json`` in ``folder`` (an entry of ``architectures``), the best also as
    :data:`ARCH`, which is the result's ``arch_path``."""
    entries = [arch_entry(desc, Path(folder) / f"top{i}_arch.json", **dict(extra))
               for i, (desc, extra) in enumerate(ranked, 1)]
    out = with_architectures(metrics, entries)
    if entries:
        out["arch_path"] = arch_entry(entries[0]["arch"], Path(folder) / ARCH)["arch_path"]
    return out


__all__ = ["ARCH", "CHECKPOINT", "CONFIG", "FINAL", "METRICS", "arch_entry", "ranked_result", "with_architectures"]
