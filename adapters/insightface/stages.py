"""Data stage for pipelines (``STAGES``): ``data.synthetic`` writes synthetic identities as a trial.

Test-scale and demo experiments need a real ``.rec`` and a ``.bin`` on disk without downloading
anything; this stage writes them (:func:`~facenas.adapters.insightface.synthetic.write_synthetic_dataset`)
into the trial's folder and returns ``rec`` (the folder) and ``val`` (its ``val.bin``), which later
steps reference as ``${data.result.rec}`` / ``${data.result.val}``.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from facenas.plugins.report import Reporter
from facenas.plugins.stages import STAGES, auxiliary_stage


@STAGES.register("data.synthetic")
@auxiliary_stage
def data_synthetic(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Write ``train.rec/.idx/property`` + ``val.bin`` of synthetic identities; ``params``: SyntheticConfig fields."""
    from .synthetic import SyntheticConfig, write_synthetic_dataset

    fields = {k: int(v) for k, v in params.items() if k in SyntheticConfig.__dataclass_fields__}
    out = os.path.join(os.fspath(reporter.out_dir), "data")
    info = write_synthetic_dataset(out, SyntheticConfig(**fields))
    return {"default": float(info["images"]), "images": float(info["images"]), "identities": float(info["identities"]),
            "val_pairs": float(info["val_pairs"]), "rec": out, "val": os.path.join(out, "val.bin")}
