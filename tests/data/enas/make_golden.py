"""Write ``search_golden.json``: digests of two tiny ENAS searches (run with the code to pin).

    .venv/bin/python tests/data/enas/make_golden.py

Each search runs on the test suite's synthetic identities (the ``synthetic_data`` fixture's
settings) on one torch thread; the file holds the SHA-256 of the final supernet, classifier head
and controller weights, the controller's baseline and the ranked candidates, and the torch
version that computed them. ``tests/enas/test_search_golden.py`` runs the same searches and
compares. The digests were first written by the search before it moved onto the shared loop
(``facenas.engine.loop``), so the test shows the port changed no number.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "search_golden.json"

#: the searches pinned: the softmax head of the paper and a margin head (PartialFC + combined margin)
RUNS: dict[str, dict[str, Any]] = {
    "softmax": {},
    "combined_margin": {"child_head": "combined", "margin_scale": 16.0, "seed": 3},
}


def search_config(rec: str, **over: Any):
    from facenas.nas.flops import count_flops
    from facenas.nas.space import create_space
    from facenas.plugins.enas.search import SearchConfig

    space = create_space("enas_test")
    table = {b.key: 0.02 + 0.05 * count_flops(b.build(), (1, *b.input_shape)) / 1e6 for b in space.all_latency_blocks()}
    base = {"threads": None, "space": "enas_test", "rec": rec, "epochs": 2, "batch_size": 16, "steps_per_epoch": 3,
            "controller_steps": 2, "arcs_per_step": 3, "val_batch_size": 16, "candidates": 4, "top_k": 3,
            "reward": {"target_ms": 0.3, "exponent": -0.5}, "latency": {"table": table}, "seed": 1}
    return SearchConfig.from_dict({**base, **over})


def make_synthetic(out: Path) -> Path:
    from facenas.adapters.insightface.synthetic import SyntheticConfig, write_synthetic_dataset

    write_synthetic_dataset(out, SyntheticConfig(num_identities=24, images_per_identity=10, val_identities=20,
                                                 val_pairs=120, seed=0))
    return out


def _update(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            h.update(str(key).encode())
            _update(h, value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            _update(h, item)
    else:
        h.update(repr(value).encode())


def _tensors_digest(tensors: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    _update(h, tensors)
    return h.hexdigest()


def digest(out: Path) -> dict[str, Any]:
    """The numbers a search in ``out`` ended with (its checkpoint and ranked candidates)."""
    from facenas.plugins.enas.search import CHECKPOINT

    state = torch.load(out / CHECKPOINT, weights_only=True)
    candidates = json.loads((out / "candidates.json").read_text())
    ranked = [{"sample": c["sample"], "val_acc": c["val_acc"], "latency_ms": c["latency_ms"]} for c in candidates]
    return {"supernet": _tensors_digest(state["supernet"]), "head": _tensors_digest(state["head"]),
            "controller": _tensors_digest(state["controller"]["controller"]),
            "baseline": float(state["controller"]["baseline"]),
            "candidates": hashlib.sha256(json.dumps(ranked, sort_keys=True).encode()).hexdigest(),
            "best_val_acc": candidates[0]["val_acc"]}


def run(name: str, rec: str, out: Path) -> dict[str, Any]:
    from facenas.plugins.enas.search import run_search

    run_search(search_config(rec, **RUNS[name]), out)
    return digest(out)


def main() -> int:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rec = str(make_synthetic(Path(tmp) / "synthetic"))
        runs = {name: run(name, rec, Path(tmp) / name) for name in RUNS}
    GOLDEN.write_text(json.dumps({"torch": torch.__version__, "runs": runs}, indent=2) + "\n")
    print(GOLDEN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
