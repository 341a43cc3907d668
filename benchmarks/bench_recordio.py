"""Read-and-decode throughput of InsightFace RecordIO: facenas vs MXNet vs image files.

One command (from the repo root, under the heavy-work lock)::

    python -m benchmarks.bench_recordio [--rec-dir $FACENAS_SHARED_DATA/celeba299] [--mxnet-python /tmp/mxenv/bin/python]

Every image of ``train.rec`` is read by key and decoded to an RGB uint8 array, single-threaded,
three ways on the same machine in the same run, in interleaved passes (best of ``--rounds``):

- facenas: :class:`~facenas.adapters.insightface.recordio.IndexedRecordIO` (``struct`` framing)
  + ``unpack`` + OpenCV ``imdecode`` / BGR->RGB;
- MXNet 1.9.1: ``mx.recordio.MXIndexedRecordIO.read_idx`` + ``mx.recordio.unpack`` +
  ``mx.image.imdecode(...).asnumpy()`` (what arcface_torch's ``MXFaceDataset`` does), in the
  interpreter given by ``--mxnet-python`` / ``$FACENAS_MXNET_PYTHON``;
- image files: the same JPEG bytes written as one ``.jpg`` per image, read with ``open`` and
  decoded with OpenCV (the ImageFolder path).

Wall time (best of the rounds) and CPU time (all threads of the process; much less sensitive to
other jobs on a shared machine) are both reported. It also checks that MXNet and facenas decode
to identical pixels (MD5 over all images).
Saves ``benchmarks/results/bench_recordio.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from benchmarks._common import save_result
from benchmarks._mxnet import Worker, mxnet_python
from facenas.utils.paths import shared_data_dir

MXNET_WORKER = r"""
import hashlib, sys, time
import mxnet as mx
rec_dir = sys.argv[1]
rec = mx.recordio.MXIndexedRecordIO(rec_dir + "/train.idx", rec_dir + "/train.rec", "r")
header, _ = mx.recordio.unpack(rec.read_idx(0))
keys = list(range(1, int(header.label[0])))

def handle(command):
    digest = hashlib.md5() if command == "md5" else None
    t0, c0 = time.perf_counter(), time.process_time()
    for k in keys:
        h, img = mx.recordio.unpack(rec.read_idx(k))
        arr = mx.image.imdecode(img).asnumpy()  # RGB, as arcface_torch's MXFaceDataset
        if digest is not None:
            digest.update(arr.tobytes())
    return {"images": len(keys), "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "mxnet": mx.__version__,
            "md5": digest.hexdigest() if digest else None}
"""


def facenas_pass(rec_dir: Path, digest=None) -> int:
    from facenas.adapters.insightface.recordio import IndexedRecordIO, decode_image, read_layout, unpack

    rec = IndexedRecordIO(rec_dir / "train.idx", rec_dir / "train.rec")
    keys = read_layout(rec).image_keys
    for k in keys:
        _, payload = unpack(rec.read_idx(k))
        arr = decode_image(payload)
        if digest is not None:
            digest.update(arr.tobytes())
    rec.close()
    return len(keys)


def files_pass(files: list[Path]) -> None:
    import cv2
    import numpy as np

    for path in files:
        with open(path, "rb") as fh:
            cv2.cvtColor(cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def timed(fn) -> tuple[float, float]:
    """Wall and CPU seconds (CPU time of all threads of this process) of ``fn()``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    import contextlib

    import cv2

    from facenas.adapters.insightface.recordio import IndexedRecordIO, read_layout, unpack

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rec-dir", default=str(shared_data_dir() / "celeba299"))
    parser.add_argument("--mxnet-python", default=None)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed passes of each side")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rec_dir = Path(args.rec_dir)
    python = mxnet_python(args.mxnet_python)

    digest = hashlib.md5()
    n = facenas_pass(rec_dir, digest)
    times: dict[str, list[float]] = {"facenas": [], "image_files": [], "mxnet": []}
    cpu: dict[str, list[float]] = {"facenas": [], "image_files": [], "mxnet": []}
    with tempfile.TemporaryDirectory() as tmp, \
            (Worker(python, MXNET_WORKER, str(rec_dir)) if python else contextlib.nullcontext()) as worker:
        rec = IndexedRecordIO(rec_dir / "train.idx", rec_dir / "train.rec")
        files = []
        for k in read_layout(rec).image_keys:  # the same JPEG bytes as image files
            path = Path(tmp) / f"{k}.jpg"
            path.write_bytes(unpack(rec.read_idx(k))[1])
            files.append(path)
        mx_check = worker.call("md5") if worker else None
        for _ in range(args.rounds):
            for side, fn in (("facenas", lambda: facenas_pass(rec_dir)), ("image_files", lambda: files_pass(files))):
                wall, cpu_s = timed(fn)
                times[side].append(wall)
                cpu[side].append(cpu_s)
            if worker:
                run = worker.call("run")
                times["mxnet"].append(run["seconds"])
                cpu["mxnet"].append(run["cpu_seconds"])
    ours = min(times["facenas"])
    result = {"rec_dir": str(rec_dir), "images": n, "rounds": args.rounds, "threads": 1,
              "facenas_seconds": round(ours, 4), "facenas_images_per_s": round(n / ours, 1),
              "image_files_seconds": round(min(times["image_files"]), 4),
              "facenas_vs_image_files": round(min(times["image_files"]) / ours, 2),
              "facenas_cpu_seconds": round(min(cpu["facenas"]), 4),
              "all_seconds": {k: [round(t, 3) for t in v] for k, v in times.items() if v},
              "all_cpu_seconds": {k: [round(t, 3) for t in v] for k, v in cpu.items() if v}}
    if mx_check:
        mx = min(times["mxnet"])
        result.update({"mxnet_python": python, "mxnet_version": mx_check["mxnet"], "mxnet_seconds": round(mx, 4),
                       "mxnet_images_per_s": round(n / mx, 1), "speedup_vs_mxnet": round(mx / ours, 2),
                       "mxnet_cpu_seconds": round(min(cpu["mxnet"]), 4),
                       "cpu_time_ratio_vs_mxnet": round(min(cpu["mxnet"]) / min(cpu["facenas"]), 2),
                       "pixels_identical_to_mxnet": mx_check["md5"] == digest.hexdigest() and mx_check["images"] == n,
                       "goal_speedup_vs_mxnet": 5.0})
    else:
        result["mxnet"] = "not measured: give --mxnet-python (a venv with mxnet==1.9.1 numpy==1.23.5)"
    save_result("bench_recordio", result, load_average=True)


if __name__ == "__main__":
    main()
