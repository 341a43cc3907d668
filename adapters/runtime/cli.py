"""``facenas export``, ``facenas latency`` and ``facenas lut build|predict|validate`` commands.

Imports here stay cheap: torch, onnxruntime and TensorFlow load inside the handlers.
"""
from __future__ import annotations

import argparse
import json
import logging

from facenas.errors import ConfigError
from facenas.utils.io import emit_json

log = logging.getLogger(__name__)

RUNTIMES = ("onnxruntime", "tflite", "torch")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a backbone to ONNX (insightface.model_zoo) or TFLite, with a parity check")
    p.add_argument("--model", required=True, help="facenas checkpoint, architecture description JSON, or backbone name")
    p.add_argument("--network", default=None, help="backbone name for an arcface_torch bare state dict")
    p.add_argument("--format", choices=("onnx", "tflite"), default=None, help="default: from --out's extension")
    p.add_argument("--out", required=True, help="output file (.onnx or .tflite)")
    p.add_argument("--input-size", type=int, default=112, help="the file's input size (default 112: aligned faces)")
    p.add_argument("--fixed-batch", action="store_true", help="ONNX: batch axis fixed to 1 instead of dynamic")
    p.add_argument("--int8", action="store_true", help="TFLite: post-training int8 quantisation")
    p.add_argument("--calibration", default=None,
                   help="TFLite int8: .rec folder/file (or .bin) of representative faces (default: celeba299 in $FACENAS_SHARED_DATA)")
    p.add_argument("--calibration-images", type=int, default=200, help="TFLite int8: number of representative faces")
    p.add_argument("--eval-bin", default=None, help="TFLite int8: .bin set to report the accuracy change on (e.g. lfw.bin)")
    p.add_argument("--no-check", action="store_true", help="skip the parity check (and its pass/fail thresholds)")
    p.add_argument("--min-cosine", type=float, default=None,
                   help="fail (exit 3, file not kept) below this min cosine to the torch model (default 0.999; int8 0.9)")
    p.add_argument("--min-spread", type=float, default=0.5,
                   help="fail when embeddings vary across faces less than this fraction of the torch model's (int8)")
    p.add_argument("--max-accuracy-drop", type=float, default=0.05,
                   help="fail when --eval-bin accuracy drops more than this from float32 to int8")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(handler=_export)

    p = sub.add_parser("latency", help="batch-1 latency (median, p90) of a model in onnxruntime, TFLite or torch")
    p.add_argument("--model", required=True, help=".onnx / .tflite file, facenas checkpoint, architecture JSON or backbone name")
    p.add_argument("--network", default=None, help="backbone name for an arcface_torch bare state dict")
    p.add_argument("--runtime", choices=RUNTIMES, nargs="+", default=None,
                   help="one or more (a side-by-side report at one input size); default: tflite for a .tflite "
                        "file, else onnxruntime")
    p.add_argument("--input-size", type=int, default=None,
                   help="input size to measure a checkpoint/architecture at (default: its native size; another "
                        "size puts the export's resize in front, as `facenas export --input-size` does)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--min-time", type=float, default=0.0, help="keep measuring for at least this many seconds")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time; cpu: the calling thread's CPU time (1 thread; not inflated by "
                        "other processes on a shared machine)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_latency)

    lut = sub.add_parser("lut", help="per-device latency lookup tables of a search space")
    lsub = lut.add_subparsers(dest="lut_command", metavar="LUT_COMMAND", required=True)
    p = lsub.add_parser("build", help="measure every distinct block of a space (resumable)")
    p.add_argument("--space", required=True, help="registered space name (ofa, enas, tnas, toy, ...)")
    p.add_argument("--space-config", default="{}", help="JSON kwargs of the space (e.g. '{\"input_size\": 64}')")
    p.add_argument("--runtime", choices=RUNTIMES, default="onnxruntime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="table file (JSON); an existing one is resumed")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=50, help="timed calls per timing (at least)")
    p.add_argument("--min-time", type=float, default=0.05, help="seconds per timing (at least)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timings per block (statistics: median over rounds)")
    p.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                   help="cpu: thread CPU time (1 thread; immune to preemption on a shared machine); auto: cpu for 1 thread")
    p.add_argument("--statistic", default="p10_ms", choices=("median_ms", "p10_ms", "p25_ms", "p90_ms", "min_ms", "mean_ms"),
                   help="per-timing statistic the table predicts")
    p.add_argument("--calibrate", type=int, default=10,
                   help="random subnets measured whole to fit the table's correction (0: no correction)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_lut_build)

    p = lsub.add_parser("predict", help="predicted latency (ms) of one network of the table's space")
    p.add_argument("--table", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--arch", help="an architecture description (facenas.arch/1 JSON file or string)")
    src.add_argument("--sample", help="a sample of the table's space as JSON ({label: value})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_lut_predict)

    p = lsub.add_parser("validate", help="predicted (table) vs measured latency of random subnets: Spearman, MAPE")
    p.add_argument("--table", required=True)
    p.add_argument("--num-subnets", type=int, default=50)
    p.add_argument("--seed", type=int, default=1, help="subnet sampling seed (use one the calibration did not)")
    p.add_argument("--warmup", type=int, default=None, help="default: the table's")
    p.add_argument("--runs", type=int, default=None, help="default: the table's")
    p.add_argument("--min-time", type=float, default=None, help="default: the table's")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default: the table's)")
    p.add_argument("--out", default=None, help="write the full result (per-subnet latencies) as JSON")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_lut_validate)


def _print(result: dict, as_json: bool, keys: tuple[str, ...] | None = None) -> None:
    if as_json:
        emit_json(result)
        return
    for k, v in result.items():
        if keys is None or k in keys:
            print(f"{k}: {v}")


def _export(args) -> int:
    fmt = args.format or ("tflite" if args.out.endswith(".tflite") else "onnx" if args.out.endswith(".onnx") else None)
    if fmt is None:
        raise ConfigError(f"cannot tell the format from --out {args.out}; give --format onnx|tflite")
    if args.int8 and fmt != "tflite":
        raise ConfigError("--int8 applies to TFLite export only (--format tflite)")
    from .models import load_model

    loaded = load_model(args.model, args.network)
    if not loaded.trained:
        log.warning("%s has freshly initialised weights (an architecture / name, not a checkpoint)", args.model)
    size = (args.input_size, args.input_size)
    from .export_checks import ExportThresholds

    thresholds = ExportThresholds(args.min_cosine, args.min_spread, args.max_accuracy_drop)
    result: dict = {"format": fmt, "out": args.out, "model": loaded.source, "native_input_size": list(loaded.input_size),
                    "input_size": list(size)}
    if fmt == "onnx":
        from .onnx_export import export_onnx

        report = export_onnx(loaded.module, args.out, size, native_size=loaded.input_size,
                             dynamic_batch=not args.fixed_batch, check=not args.no_check)
        result["parity"] = report.to_dict() if report else None
        if report and not args.json:
            print(report.line())
        if report:
            _enforce_onnx(report.to_dict(), thresholds, args.out)
    else:
        from .tflite_export import export_tflite

        out = export_tflite(loaded.module, args.out, size, native_size=loaded.input_size, check=not args.no_check,
                            int8=args.int8, calibration=args.calibration, calibration_images=args.calibration_images,
                            eval_bin=args.eval_bin, thresholds=thresholds)
        result.update(out)
        if not args.json:
            for key in ("parity", "int8_parity", "int8_spread_ratio"):
                if result.get(key) is not None:
                    print(f"{key}: {json.dumps(result[key])}")
            if result.get("accuracy"):
                print(f"accuracy: {json.dumps(result['accuracy'])}")
    if args.json:
        emit_json(result)
    else:
        print(f"wrote {args.out}")
    return 0


def _enforce_onnx(parity: dict, thresholds, out: str) -> None:
    """Remove a written ONNX file whose parity is below the threshold, and fail naming the figure."""
    import os

    from .export_checks import check_export, raise_on_failures

    failures = check_export("onnxruntime", parity, None, None, thresholds, int8=False)
    if failures and os.path.exists(out):
        os.remove(out)
    raise_on_failures(failures, out, written=True)


def _latency(args) -> int:
    from .latency import device_info, measure_runtimes, runtime_of

    size = (args.input_size, args.input_size) if args.input_size else None
    runtimes = args.runtime or [runtime_of(args.model, None)]
    results = measure_runtimes(args.model, runtimes, size, threads=args.threads, warmup=args.warmup, runs=args.runs,
                               min_time_s=args.min_time, network=args.network, clock=args.clock)
    if len(results) == 1:
        out = next(iter(results.values())).to_dict()
    else:
        first = next(iter(results.values()))
        out = {"model": first.model, "input_size": first.input_size, "runtimes": {k: v.to_dict() for k, v in results.items()}}
    out["clock"] = args.clock
    out["device"] = device_info()
    if args.json:
        emit_json(out)
    else:
        for res in results.values():
            print(f"{res.model} [{res.runtime}, {res.threads} thread(s), input {res.input_shape}]: "
                  f"median {res.median_ms:.3f} ms, p90 {res.p90_ms:.3f} ms ({res.runs} runs after {res.warmup} warm-up)")
    return 0


def _lut_build(args) -> int:
    from .lut import BuildConfig, build_table

    try:
        space_config = json.loads(args.space_config)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--space-config is not JSON ({exc}): {args.space_config}") from None
    cfg = BuildConfig(space=args.space, space_config=space_config, runtime=args.runtime, threads=args.threads,
                      warmup=args.warmup, runs=args.runs, min_time_s=args.min_time, rounds=args.rounds,
                      clock=args.clock, statistic=args.statistic, calibrate=args.calibrate, seed=args.seed)
    table = build_table(cfg, args.out)
    summary = {"out": args.out, "space": table.space, "runtime": table.runtime, "threads": table.threads,
               "entries": len(table.entries), "calibration": table.calibration}
    _print(summary, args.json)
    return 0


def _lut_validate(args) -> int:
    from facenas.utils.io import write_json

    from .lut import LatencyTable, validate_table

    table = LatencyTable.load(args.table)
    result = validate_table(table, args.num_subnets, args.seed, args.warmup, args.runs, args.min_time, args.rounds)
    if args.out:
        write_json(args.out, result)
    summary = {k: v for k, v in result.items() if k != "subnets"}
    if args.json:
        emit_json(summary)
    else:
        print(f"{result['num_subnets']} subnets of '{result['space']}' [{result['runtime']}, {result['threads']} thread(s)]: "
              f"Spearman {result['spearman']:.4f}, MAPE {100 * result['mape']:.2f}% "
              f"(uncorrected sum: Spearman {result['raw_spearman']:.4f}, MAPE {100 * result['raw_mape']:.2f}%)")
    return 0


def _lut_predict(args) -> int:
    from .latency_model import LatencyModel
    from .lut import LatencyTable

    table = LatencyTable.load(args.table)
    if args.arch is not None:
        from facenas.nas.space import create_space, load_description

        desc = load_description(args.arch)
        space, sample = create_space(desc["space"], **desc["space_config"]), desc["sample"]
    else:
        try:
            sample = json.loads(args.sample)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--sample is not JSON ({exc}): {args.sample}") from None
        if not isinstance(sample, dict):
            raise ConfigError(f"--sample must be a JSON object {{label: value}}, got {args.sample}")
        space = table.create_space()
    model = LatencyModel(table, space)
    result = {"table": args.table, "space": table.space, "runtime": table.runtime, "threads": table.threads,
              "predicted_ms": model.predict(sample), "block_sum_ms": model.block_sum(sample),
              "blocks": len(model.keys(sample)), "corrected": bool(table.calibration)}
    _print(result, args.json)
    return 0
