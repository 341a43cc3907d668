"""Latency lookup tables of the OFA space at CPU scale: build, then validate on 50 random subnets.

One command (run it under the heavy lock; it measures for several minutes)::

    .venv/bin/python -m benchmarks.bench_lut

For each runtime (onnxruntime and TFLite, 1 thread by default) it builds -- or resumes --
``benchmarks/results/lut_<space>_<runtime>_t<threads>.json`` (every distinct block timed in 10
interleaved rounds on the thread-CPU clock, relative to a speed probe; the per-call overhead; a
calibration on 20 subnets of a seed of their own), then ``lut validate`` on 50 other random
subnets, and records Spearman rank correlation and MAPE of the corrected prediction next to the
plain block sum's and the absolute (not speed-normalised) figures, in
``benchmarks/results/bench_lut.json``.
Goal (issue 8): Spearman >= 0.95 and MAPE <= 10% in each runtime.
"""
from __future__ import annotations

import argparse
import json
import logging
import time

from benchmarks._common import RESULTS_DIR, save_result


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="ofa")
    ap.add_argument("--space-config", default='{"input_size": 64, "embedding_size": 128}',
                    help="the space's kwargs (default: OFA at the CPU-scale protocol's 64x64, 128-d)")
    ap.add_argument("--runtimes", nargs="+", default=["onnxruntime", "tflite"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--num-subnets", type=int, default=50)
    ap.add_argument("--calibrate", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=10, help="interleaved timings of every block / network")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1, help="validation subnets' seed")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from facenas.adapters.runtime.lut import BuildConfig, build_table, validate_table

    space_config = json.loads(args.space_config)
    result: dict = {"space": args.space, "space_config": space_config, "threads": args.threads, "runtimes": {}}
    for runtime in args.runtimes:
        table_path = RESULTS_DIR / f"lut_{args.space}_{runtime}_t{args.threads}.json"
        t0 = time.perf_counter()
        table = build_table(BuildConfig(space=args.space, space_config=space_config, runtime=runtime,
                                        threads=args.threads, runs=args.runs, min_time_s=args.min_time,
                                        rounds=args.rounds, calibrate=args.calibrate), table_path)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = validate_table(table, args.num_subnets, args.seed, rounds=args.rounds)
        res["build_wall_s"] = round(build_s, 1)
        res["validate_wall_s"] = round(time.perf_counter() - t0, 1)
        res["entries"] = len(table.entries)
        res["goal_met"] = bool(res["spearman"] >= 0.95 and res["mape"] <= 0.10)
        result["runtimes"][runtime] = res
    save_result("bench_lut", result)
    return result


if __name__ == "__main__":
    main()
