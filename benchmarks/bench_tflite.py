"""TFLite conversion approaches compared on latency, and the int8 accuracy change on lfw.bin.

One command::

    .venv/bin/python -m benchmarks.bench_tflite [--checkpoints CKPT ...]

Part 1 -- latency (batch 1, 1 thread, median of >= 100 runs after warm-up) of the same networks in

* ``onnxruntime``: the ONNX export (the reference the issue asks to compare against);
* ``tflite_nhwc``: facenas's TensorFlow rebuild (NHWC throughout, weights re-laid out once);
* ``tflite_nchw``: a node-by-node NCHW conversion with a transpose pair around every conv/pool
  (what ONNX-based converters such as onnx-tf produce, the slow path the OFA paper avoided);
* ``tflite_int8``: the rebuild with post-training int8 quantisation (XNNPACK / built-in int8 kernels).

Networks: OFA subnets at the CPU-scale protocol (64x64, 128-d: smallest, largest, random) and
MobileFaceNet at 64 and 112. Each network is exported in every form first; the forms are then
timed in interleaved rounds, so machine load hits them alike.

Part 2 -- int8 accuracy: for each trained checkpoint given (``--checkpoints``), float32 and int8
TFLite files (int8 calibrated on 200 faces of ``$FACENAS_SHARED_DATA/celeba299``) are evaluated on
``$FACENAS_SHARED_DATA/lfw.bin`` (10 folds, flip-test) and the change is recorded.

Results: ``benchmarks/results/bench_tflite.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import time

import numpy as np

from benchmarks._common import save_result

FORMS = ("onnxruntime", "tflite_nhwc", "tflite_nchw", "tflite_int8")


def _networks(seed: int):
    from facenas.adapters.insightface.backbones import get_model
    from facenas.nas.space import create_space

    space = create_space("ofa", input_size=64, embedding_size=128)
    rng = np.random.default_rng(seed)
    nets = [("ofa64_smallest", space.describe(space.smallest())), ("ofa64_largest", space.describe(space.largest()))]
    nets += [(f"ofa64_random{i}", space.describe(space.sample(rng))) for i in range(2)]
    out = [(name, get_model(desc), (3, 64, 64)) for name, desc in nets]
    out.append(("mbf64", get_model("mbf", num_features=128, input_size=64), (3, 64, 64)))
    out.append(("mbf112", get_model("mbf", num_features=128, input_size=112), (3, 112, 112)))
    return out


def _calibration(shape, n: int = 32):
    from facenas.adapters.runtime.faces import default_faces, normalise

    faces, _ = default_faces(n)
    if faces is None:
        faces = np.random.default_rng(0).integers(0, 256, size=(n, 112, 112, 3), dtype=np.uint8)
    x = normalise(faces, shape[1:])
    return [np.transpose(x[i:i + 1], (0, 2, 3, 1)).copy() for i in range(len(x))]


def latency_part(threads: int, rounds: int, runs: int, min_time: float, seed: int) -> dict:
    from facenas.adapters.runtime.latency import onnx_runner, time_runner
    from facenas.adapters.runtime.onnx_export import torch_export
    from facenas.adapters.runtime.tflite_export import onnx_static, onnx_to_tflite, tflite_runner
    from facenas.nas.flops import count_flops
    import tempfile
    from pathlib import Path

    rows = {}
    for name, model, shape in _networks(seed):
        model.eval()
        proto = onnx_static(model, shape)
        t0 = time.perf_counter()
        nhwc = onnx_to_tflite(proto, "nhwc")
        convert_s = time.perf_counter() - t0
        nchw = onnx_to_tflite(proto, "nchw")
        int8 = onnx_to_tflite(proto, "nhwc", _calibration(shape))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            torch_export(model, path, shape, dynamic_batch=False)
            onnx_bytes = path.read_bytes()
        runners = {"onnxruntime": onnx_runner(onnx_bytes, threads)[0], "tflite_nhwc": tflite_runner(nhwc, threads)[0],
                   "tflite_nchw": tflite_runner(nchw, threads)[0], "tflite_int8": tflite_runner(int8, threads)[0]}
        per = {f: [] for f in FORMS}
        for _ in range(rounds):
            for form in FORMS:
                per[form].append(float(np.median(time_runner(runners[form], 10, runs, min_time)) * 1e3))
        med = {f: float(np.median(v)) for f, v in per.items()}
        rows[name] = {"input": list(shape), "mflops": count_flops(model, (1, *shape)) / 1e6,
                      "median_ms": med, "rounds_ms": per, "nhwc_convert_s": round(convert_s, 2),
                      "bytes": {"onnx": len(onnx_bytes), "tflite_nhwc": len(nhwc), "tflite_nchw": len(nchw),
                                "tflite_int8": len(int8)},
                      "tflite_nhwc_vs_onnxruntime": med["tflite_nhwc"] / med["onnxruntime"],
                      "tflite_nchw_vs_nhwc": med["tflite_nchw"] / med["tflite_nhwc"],
                      "tflite_int8_vs_nhwc": med["tflite_int8"] / med["tflite_nhwc"]}
        logging.info("%s: %s", name, ", ".join(f"{f} {v:.3f} ms" for f, v in med.items()))
    return rows


def accuracy_part(checkpoints: list[str], lfw: str, calibration_images: int) -> dict:
    from facenas.adapters.runtime.models import load_model
    from facenas.adapters.runtime.tflite_export import int8_accuracy_change, onnx_static, onnx_to_tflite, \
        representative_faces

    out = {}
    for ckpt in checkpoints:
        loaded = load_model(ckpt)
        shape = (3, *loaded.input_size)
        proto = onnx_static(loaded.module, shape)
        reps, source = representative_faces(None, calibration_images, loaded.input_size)
        fp = onnx_to_tflite(proto, "nhwc")
        q = onnx_to_tflite(proto, "nhwc", reps)
        res = int8_accuracy_change(fp, q, lfw)
        res.update(calibration=source, calibration_images=len(reps), input_size=list(loaded.input_size))
        out[ckpt] = res
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoints", nargs="*", default=[], help="trained facenas checkpoints for the int8 accuracy change")
    ap.add_argument("--lfw", default=None, help="default: $FACENAS_SHARED_DATA/lfw.bin")
    ap.add_argument("--calibration-images", type=int, default=200)
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from facenas.utils.paths import shared_data_dir

    result: dict = {"threads": args.threads, "forms": list(FORMS)}
    result["alternatives_not_run"] = {
        name: ("installed" if importlib.util.find_spec(mod) else "not installed")
        for name, mod in (("onnx2tf", "onnx2tf"), ("litert-torch", "litert_torch"), ("onnx-tf", "onnx_tf"))}
    t0 = time.perf_counter()
    if not args.skip_latency:
        result["latency"] = latency_part(args.threads, args.rounds, args.runs, args.min_time, args.seed)
    result["latency_wall_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    lfw = args.lfw or str(shared_data_dir() / "lfw.bin")
    result["int8_accuracy"] = accuracy_part(args.checkpoints, lfw, args.calibration_images) if args.checkpoints else \
        "no trained checkpoint given (--checkpoints): int8 accuracy change not measured"
    result["accuracy_wall_s"] = round(time.perf_counter() - t0, 1)
    save_result("bench_tflite", result)
    return result


if __name__ == "__main__":
    main()
