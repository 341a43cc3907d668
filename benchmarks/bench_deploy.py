"""Deployment figures of final networks: latency in onnxruntime and TFLite next to LFW accuracy.

One command for any list of trained checkpoints or architecture descriptions (under the lock)::

    .venv/bin/python -m benchmarks.bench_deploy --models A.pt B.pt arch.json

Per model: MFLOPs (MACs) and parameters at its native input size; batch-1 latency (median and p90,
``--threads`` threads) in onnxruntime, TFLite float32 (facenas's NHWC rebuild) and, with
``--int8``, TFLite int8; all forms timed in interleaved rounds (thread CPU clock for 1 thread, ``--clock``).
``--arch-of FILE=CHECKPOINT`` times an architecture-only file in place of a checkpoint whose weights
were not kept (recorded as ``stands_for``). For a trained checkpoint also the
LFW accuracy (``$FACENAS_SHARED_DATA/lfw.bin``, 10 folds, flip-test, at the network's input size: the
CPU-scale protocol's) of the torch model and of the TFLite float32 file. An architecture
description has fresh weights, so its accuracy is reported as not applicable.

Results: ``benchmarks/results/bench_deploy.json`` (``--name`` changes the file name).
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import save_result


def _lfw_acc(model, lfw: str, size) -> dict:
    from facenas.adapters.insightface.evaluate import VerificationEvaluator

    ev = VerificationEvaluator({"lfw": lfw}, image_size=tuple(size))
    res = ev.evaluate_set(model, "lfw")
    return {"lfw_acc": float(res.accuracy), "lfw_acc_std": float(res.accuracy_std)}


def measure_model(source: str, threads: int, rounds: int, runs: int, min_time: float, int8: bool,
                  lfw: str | None, clock: str = "wall") -> dict:
    from facenas.adapters.runtime.latency import onnx_runner, time_runner
    from facenas.adapters.runtime.models import load_model
    from facenas.adapters.runtime.onnx_export import torch_export
    from facenas.adapters.runtime.tflite_export import (TFLiteEmbedder, onnx_static, onnx_to_tflite,
                                                         representative_faces, tflite_runner)
    from facenas.nas.flops import count_flops, count_params

    loaded = load_model(source)
    model, size = loaded.module.eval(), tuple(loaded.input_size)
    shape = (3, *size)
    proto = onnx_static(model, shape)
    from facenas.adapters.runtime.tf_rebuild import UnsupportedOpError

    try:
        forms = {"tflite_float32": onnx_to_tflite(proto, "nhwc")}
    except UnsupportedOpError as exc:  # recorded, not hidden: the network gets ORT latency only
        forms, int8 = {}, False
        tflite_error = str(exc)
    else:
        tflite_error = None
    if int8:
        forms["tflite_int8"] = onnx_to_tflite(proto, "nhwc", representative_faces(None, 200, size)[0])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        torch_export(model, path, shape, dynamic_batch=False)
        onnx_bytes = path.read_bytes()
    runners = {"onnxruntime": onnx_runner(onnx_bytes, threads)[0]}
    runners.update({k: tflite_runner(v, threads)[0] for k, v in forms.items()})
    times = {k: [] for k in runners}
    for _ in range(rounds):
        for k, run in runners.items():
            times[k].append(time_runner(run, 10, runs, min_time, clock) * 1e3)
    latency = {}
    for k, parts in times.items():
        medians = [float(np.median(t)) for t in parts]
        latency[k] = {"median_ms": float(np.median(medians)), "p90_ms": float(np.percentile(np.concatenate(parts), 90)),
                      "round_medians_ms": medians}
    row = {"model": source, "kind": loaded.kind, "input_size": list(size), "clock": clock,
           "mflops": count_flops(model, (1, *shape)) / 1e6, "params_m": count_params(model) / 1e6,
           "latency": latency, **({"tflite_error": tflite_error} if tflite_error else {})}
    if lfw == "skip":
        row["accuracy"] = "not measured here (--skip-accuracy): see the method's own record"
    elif loaded.trained and lfw and os.path.isfile(lfw):
        row["torch"] = _lfw_acc(model, lfw, size)
        if "tflite_float32" in forms:
            row["tflite_float32"] = _lfw_acc(TFLiteEmbedder(forms["tflite_float32"]), lfw, size)
        if int8:
            row["tflite_int8"] = _lfw_acc(TFLiteEmbedder(forms["tflite_int8"]), lfw, size)
    else:
        row["accuracy"] = "not applicable (fresh weights)" if not loaded.trained else f"no lfw.bin at {lfw}"
    logging.info("%s: %s", source, ", ".join(f"{k} {v['median_ms']:.3f} ms" for k, v in latency.items()))
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True, help="facenas checkpoints and/or architecture JSON files")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--int8", action="store_true", help="also TFLite int8 (calibrated on celeba299 faces)")
    ap.add_argument("--lfw", default=None, help="default: $FACENAS_SHARED_DATA/lfw.bin")
    ap.add_argument("--name", default="bench_deploy", help="result file name")
    ap.add_argument("--clock", choices=("wall", "cpu", "auto"), default="auto",
                    help="latency clock: thread CPU time (immune to preemption on a busy machine; 1 thread only) "
                         "or wall; auto = cpu for 1 thread")
    ap.add_argument("--arch-of", nargs="*", default=[], metavar="FILE=CHECKPOINT[,CHECKPOINT]",
                    help="FILE has the architecture of CHECKPOINT(s) whose weights were not kept: it is timed and "
                         "recorded as standing for them (latency depends on the architecture only)")
    ap.add_argument("--skip-accuracy", action="store_true",
                    help="latency only (the LFW accuracy of each checkpoint is in its training / search record)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from facenas.utils.paths import shared_data_dir

    lfw = "skip" if args.skip_accuracy else (args.lfw or str(shared_data_dir() / "lfw.bin"))
    t0 = time.perf_counter()
    from facenas.adapters.runtime.lut import resolve_clock

    clock = resolve_clock(args.clock, args.threads)
    stands_for: dict[str, list[str]] = {}
    for item in args.arch_of:
        if "=" not in item:
            raise SystemExit(f"--arch-of {item!r}: expected FILE=CHECKPOINT[,CHECKPOINT]")
        file, targets = item.split("=", 1)
        stands_for[file] = targets.split(",")
    rows = []
    for m in [*args.models, *stands_for]:
        row = measure_model(m, args.threads, args.rounds, args.runs, args.min_time, args.int8,
                            "skip" if m in stands_for else lfw, clock)
        if m in stands_for:
            row["stands_for"] = stands_for[m]
            row["accuracy"] = "architecture only (untrained weights): accuracy in the stood-for checkpoint's record"
        rows.append(row)
    result = {"threads": args.threads, "models": rows, "wall_s": round(time.perf_counter() - t0, 1)}
    print(f"{'model':40s} {'MFLOPs':>8s} {'ORT ms':>8s} {'TFLite ms':>10s} {'LFW acc':>8s}")
    for r in rows:
        acc = r.get("torch", {}).get("lfw_acc")
        acc = "n/a" if acc is None else f"{acc:.4f}"
        print(f"{os.path.basename(r['model'])[:40]:40s} {r['mflops']:8.1f} {r['latency']['onnxruntime']['median_ms']:8.3f} "
              f"{r['latency'].get('tflite_float32', {}).get('median_ms', float('nan')):10.3f} {acc:>8}")
    save_result(args.name, result)
    return result


if __name__ == "__main__":
    main()
