"""Loading ``lfw.bin`` (12,000 JPEGs): facenas ``load_bin`` vs arcface_torch's ``load_bin``.

One command (from the repo root, under the heavy-work lock)::

    python -m benchmarks.bench_load_bin [--bin $FACENAS_SHARED_DATA/lfw.bin] [--mxnet-python /tmp/mxenv/bin/python]
        [--arcface-torch PATH/TO/recognition/arcface_torch]

- facenas: :func:`facenas.adapters.insightface.binset.load_bin` -- restricted unpickler, OpenCV
  decode to one uint8 ``(2N, 112, 112, 3)`` array (threads: 1, and ``--threads``, default 2); the
  evaluator normalises and flips per batch.
- reference: arcface_torch ``eval/verification.py``'s own ``load_bin(path, (112, 112))`` imported
  from the checkout and run for real in the mxnet 1.9.1 interpreter (``pickle.load`` +
  ``mx.image.imdecode`` + two float tensors, original and flipped), with torch made importable
  there from this environment's site-packages. Without ``--mxnet-python`` / ``--arcface-torch``
  (or ``$FACENAS_MXNET_PYTHON`` / ``$FACENAS_ARCFACE_TORCH``) the reference is not measured.

Timed loads of both sides are interleaved (best of ``--rounds``). Also checks that both decode identical pixels (MD5 of the unflipped images). Saves
``benchmarks/results/bench_load_bin.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import time

from benchmarks._common import save_result
from benchmarks._mxnet import Worker, mxnet_python
from facenas.utils.paths import shared_data_dir

REFERENCE_WORKER = r"""
import contextlib, gc, hashlib, importlib.util, io, os, sys, time
import numpy, mxnet
bin_path, checkout, torch_site = sys.argv[1:4]
sys.path.append(torch_site)
import torch
torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("arcface_torch_verification", os.path.join(checkout, "eval", "verification.py"))
ver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ver)

def handle(command):
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints progress
        data_list, issame = ver.load_bin(bin_path, (112, 112))
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    md5 = None
    if command == "md5":  # the unflipped float tensor holds the decoded 0..255 pixel values
        md5 = hashlib.md5(data_list[0].permute(0, 2, 3, 1).numpy().astype(numpy.uint8).tobytes()).hexdigest()
    del data_list
    gc.collect()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "pairs": len(issame), "md5": md5, "mxnet": mxnet.__version__, "torch": torch.__version__}
"""


def main() -> None:
    import torch

    from facenas.adapters.insightface.binset import load_bin

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=str(shared_data_dir() / "lfw.bin"))
    parser.add_argument("--mxnet-python", default=None)
    parser.add_argument("--arcface-torch", default=os.environ.get("FACENAS_ARCFACE_TORCH"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timed loads of each side")
    args = parser.parse_args()

    python = mxnet_python(args.mxnet_python)
    use_reference = bool(python and args.arcface_torch)
    torch_site = os.path.dirname(os.path.dirname(torch.__file__))
    variants = sorted({1, args.threads})
    times: dict[str, list[float]] = {f"facenas_{t}": [] for t in variants}
    times["reference"] = []
    cpu: dict[str, list[float]] = {k: [] for k in times}
    result: dict = {"bin": args.bin, "rounds": args.rounds}
    with (Worker(python, REFERENCE_WORKER, args.bin, args.arcface_torch, torch_site) if use_reference
          else contextlib.nullcontext()) as worker:
        vs = load_bin(args.bin, threads=1)
        digest = hashlib.md5(vs.images.tobytes()).hexdigest()
        result["pairs"] = vs.num_pairs
        del vs
        ref_check = worker.call("md5") if worker else None
        for _ in range(args.rounds):  # interleaved: both sides see the same machine load
            for t in variants:
                t0, c0 = time.perf_counter(), time.process_time()
                vs = load_bin(args.bin, threads=t)
                times[f"facenas_{t}"].append(time.perf_counter() - t0)
                cpu[f"facenas_{t}"].append(time.process_time() - c0)
                del vs
            if worker:
                run = worker.call("run")
                times["reference"].append(run["seconds"])
                cpu["reference"].append(run["cpu_seconds"])
    for t in variants:
        result[f"facenas_seconds_{t}_thread{'s' if t > 1 else ''}"] = round(min(times[f"facenas_{t}"]), 3)
    result["all_seconds"] = {k: [round(v, 3) for v in vs_] for k, vs_ in times.items() if vs_}
    result["all_cpu_seconds"] = {k: [round(v, 3) for v in vs_] for k, vs_ in cpu.items() if vs_}
    if ref_check:
        ref = min(times["reference"])
        result.update({
            "reference": "arcface_torch eval/verification.py load_bin, run for real (mxnet %s, torch %s, 1 thread)"
                         % (ref_check["mxnet"], ref_check["torch"]),
            "reference_seconds": round(ref, 3),
            "speedup_1_thread": round(ref / min(times["facenas_1"]), 2),
            f"speedup_{args.threads}_threads": round(ref / min(times[f"facenas_{args.threads}"]), 2),
            "cpu_time_ratio_1_thread": round(min(cpu["reference"]) / min(cpu["facenas_1"]), 2),
            "pixels_identical_to_reference": ref_check["md5"] == digest and ref_check["pairs"] == result["pairs"],
            "goal_speedup": 3.0,
        })
    else:
        result["reference"] = "not measured: give --mxnet-python (mxnet 1.9.1 venv) and --arcface-torch (checkout)"
    save_result("bench_load_bin", result, load_average=True)


if __name__ == "__main__":
    main()
