"""int8 TFLite export of a network trained below 112 px: at its native size and at 112 (resize in front).

One command per checkpoint::

    python -m benchmarks.bench_int8_export --checkpoint work_dirs/celeba299_mbf_cpu/best.pt

For each form -- the native size, 112 with the export's resize, and 112 with the resize written
as before the fix (constant matrix as the left operand: TFLite's int8 ``BATCH_MATMUL`` then
answers the zero point) -- the float32 and int8 files are exported with ``facenas``'s own
``export_tflite`` (thresholds opened so every figure is recorded) and the record holds the int8
cosine parity to the torch model, the embedding spread across faces relative to the torch
model's, the float32 / int8 verification accuracy on ``--bin`` and whether the export's default
thresholds pass.

Results: ``benchmarks/results/bench_int8_export.json``.
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import save_result


def _left_constant_resize(model, from_size, to_size):
    """The export's resize as written before the fix: ``rows @ (x @ cols_t)`` (constant on the left)."""
    from facenas.adapters.runtime.models import InputResize

    class LeftConstantResize(InputResize):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(torch.matmul(self.rows, torch.matmul(x, self.cols_t)))

    return LeftConstantResize(model, from_size, to_size).eval()


def measure(checkpoint: str, bin_path: str | None, calibration_images: int) -> dict:
    from facenas.adapters.runtime.export_checks import ExportThresholds, check_export
    from facenas.adapters.runtime.models import load_model
    from facenas.adapters.runtime.tflite_export import export_tflite

    loaded = load_model(checkpoint)
    native = tuple(loaded.input_size)
    open_limits = ExportThresholds(min_cosine=-1.0, min_spread=0.0, max_accuracy_drop=1.0)
    forms = {f"native_{native[0]}": (loaded.module, native, native),
             "112_resize": (loaded.module, (112, 112), native),
             "112_resize_before_fix": (_left_constant_resize(loaded.module, (112, 112), native), (112, 112), (112, 112))}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (module, size, native_size) in forms.items():
            t0 = time.perf_counter()
            res = export_tflite(module, Path(tmp) / f"{name}.tflite", size, native_size=native_size, int8=True,
                                calibration_images=calibration_images, eval_bin=bin_path, thresholds=open_limits)
            parity, acc = res["int8_parity"], res.get("accuracy")
            fails = check_export("tflite int8", parity, res["int8_spread_ratio"], acc, ExportThresholds(), int8=True)
            rows[name] = {"input_size": list(size), "int8_min_cosine": parity["min_cosine"],
                          "int8_spread_ratio": res["int8_spread_ratio"], "faces": parity["faces_source"],
                          "num_faces": parity["num_faces"], "accuracy": acc, "passes_default_thresholds": not fails,
                          "failures": fails, "seconds": round(time.perf_counter() - t0, 1)}
            logging.info("%s: %s", name, rows[name])
    return {"checkpoint": os.fspath(checkpoint), "native_input_size": list(native), "bin": bin_path,
            "calibration_images": calibration_images, "forms": rows}


def main(argv=None) -> dict:
    from facenas.utils.paths import shared_data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a facenas checkpoint trained below 112 px")
    ap.add_argument("--bin", default=str(shared_data_dir() / "lfw.bin"), help="verification set ('' to skip)")
    ap.add_argument("--calibration-images", type=int, default=200)
    ap.add_argument("--name", default="bench_int8_export")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = measure(args.checkpoint, args.bin or None, args.calibration_images)
    save_result(args.name, result)
    return result


if __name__ == "__main__":
    main()
