"""Infrastructure stages whose code lives in the adapters, registered in ``STAGES`` here.

Adapters do not import the plugins layer, so they define plain stage functions and this module
(imported by the registry on first lookup) gives them their names.
"""
from __future__ import annotations

from facenas.adapters.insightface.stages import data_synthetic
from facenas.nas.stages import STAGES, auxiliary_stage

STAGES.register("data.synthetic")(auxiliary_stage(data_synthetic))
