"""Regenerate the reference parameter names/shapes of arcface_torch's backbones (test data).

Run with a checkout of deepinsight/insightface (never vendored into this repository):

    python tests/data/arcface_torch/make_reference.py /path/to/insightface/recognition/arcface_torch

It imports that checkout's ``backbones.get_model`` and writes ``<network>.json`` beside this
file: ``{"network", "num_features", "state_dict": {name: shape}}`` in state_dict order, plus
the ``requires_grad`` flags. The files are data; facenas's own backbones are checked against
them in ``tests/insightface/test_backbones.py``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

NETWORKS = ("r18", "r34", "r50", "r100", "mbf", "mbf_large")


def _dumps(record: dict) -> str:
    """JSON with one state_dict entry per line (reviewable diffs, small files)."""
    head = {k: v for k, v in record.items() if k != "state_dict"}
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in record["state_dict"].items()]
    text = json.dumps(head)[:-1] + ', "state_dict": {\n' + ",\n".join(lines) + "\n}}\n"
    json.loads(text)  # the format stays valid JSON
    return text


def main(checkout: str) -> None:
    sys.path.insert(0, checkout)
    from backbones import get_model  # type: ignore[import-not-found]

    out_dir = Path(__file__).resolve().parent
    for name in NETWORKS:
        model = get_model(name, dropout=0.0, fp16=False, num_features=512)
        record = {
            "network": name,
            "num_features": 512,
            "state_dict": {k: list(v.shape) for k, v in model.state_dict().items()},
            "frozen": [k for k, p in model.named_parameters() if not p.requires_grad],
            "num_params": sum(p.numel() for p in model.parameters()),
        }
        (out_dir / f"{name}.json").write_text(_dumps(record))
        print(name, len(record["state_dict"]), "entries")


if __name__ == "__main__":
    main(sys.argv[1])
