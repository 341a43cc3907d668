"""OFA stages locally: data.synthetic -> ofa.evaluate (a saved supernet) -> ofa.search on the evaluated candidates."""
from __future__ import annotations

import math

import numpy as np

from facenas.plugins.ofa.train import save_supernet
from facenas.nas.space import create_space
from facenas.nas.stages import STAGES, run_stage_locally


def test_data_evaluate_search_chain(tmp_path):
    assert {"data.synthetic", "ofa.train_supernet", "ofa.evaluate", "ofa.search"} <= set(STAGES.names())
    data = run_stage_locally("data.synthetic", {"num_identities": 8, "images_per_identity": 4, "val_identities": 6,
                                                "val_pairs": 40, "image_size": 32}, str(tmp_path / "data"))
    assert data["images"] == 32 and data["val"].endswith("val.bin")
    space = create_space("ofa_tiny")
    supernet = space.supernet()
    save_supernet(tmp_path / "supernet.pt", space, supernet)
    rng = np.random.default_rng(0)
    candidates = []
    for i in range(5):
        sample = space.sample(rng)
        res = run_stage_locally("ofa.evaluate", {"supernet": str(tmp_path / "supernet.pt"), "sample": sample,
                                                 "rec": data["rec"], "val": [data["val"]], "target": "val_auc",
                                                 "flip": False, "calibration_images": 16, "export": i == 0},
                                str(tmp_path / f"eval{i}"))
        assert res["default"] == res["val_auc"] and math.isfinite(res["mflops"]) and res["params_m"] > 0
        candidates.append({"arch": {"sample": sample}, "metrics": {"default": res["default"]}})
    assert (tmp_path / "eval0" / "model.pt").is_file()
    bound = float(np.median([space.flops(c["arch"]["sample"]) for c in candidates])) / 1e6
    for ranker in ("comparator", "mlp"):
        out = run_stage_locally("ofa.search", {"supernet": str(tmp_path / "supernet.pt"), "candidates": candidates,
                                               "ranker": ranker, "cost": "mflops", "bound": bound,
                                               "evolution": {"generations": 5, "population_size": 10, "top_k": 2}},
                                str(tmp_path / f"search_{ranker}"))
        assert len(out["architectures"]) == 2 and out["best_cost"] <= bound
        assert all(space.flops(a["sample"]) / 1e6 <= bound + 1e-9 for a in out["architectures"])
