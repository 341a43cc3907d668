"""Export graph passes, measured per network: batch-1 latency with and without each pass, per runtime.

    python -m benchmarks.bench_export_passes            # ~5 min on a busy 2-core machine

For each network (fresh weights, BatchNorm calibrated on random batches: latency does not depend
on the weights; 64x64, the CPU-scale protocol's size) and each form -- the plain export and each PReLU rewrite of
:mod:`facenas.adapters.runtime.graph_passes` -- the ONNX file (``torch_export(..., passes=...)``)
is timed in onnxruntime and its TFLite rebuild (``onnx_to_tflite``) in the TFLite interpreter,
1 thread, all forms of a network interleaved in ``--rounds`` rounds (the median of the round
medians is reported; thread CPU clock, so other processes' bursts are not counted). Each rewritten
form is checked against the plain export on the same random input (``max_abs_diff``: the rewrite
is exact, so 0.0 is expected) and the default export against the torch model by the export's
parity check (``check_onnx_parity`` on real faces when the real-data folder has them).

MobileFaceNet x0.5 with ReLU in place of PReLU is timed too: the floor a PReLU rewrite can approach.
Results: ``benchmarks/results/bench_export_passes.json``; ``best`` names the fastest form per
network and runtime, and ``defaults`` the forms :func:`~facenas.adapters.runtime.graph_passes.default_passes`
picks, so the two can be compared.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks._common import save_result

#: the forms compared: name -> the graph passes that produce it
FORMS: dict[str, tuple[str, ...]] = {
    "plain": (),
    "prelu_relu_min": ("prelu_relu_min",),
    "prelu_max_min": ("prelu_max_min",),
}


def _networks() -> dict[str, Callable[[], Any]]:
    """Network name -> a constructor (64x64 input), seeded so every run builds the same weights."""
    import torch

    from facenas.adapters.insightface.backbones import get_model
    from facenas.nas.space import build_from_description, create_space

    results = Path(__file__).resolve().parent / "results"

    def ofa_pick():
        # OFA's chosen subnet (bench_ofa.json: search under the baseline's latency, comparator predictor)
        rec = json.loads((results / "bench_ofa.json").read_text())["result"]
        sample = rec["search"]["runs"]["baseline/comparator"]["sample"]
        return build_from_description({"format": "facenas.arch/1", "space": "ofa", "space_config": rec["space_config"],
                                       "sample": sample})

    def enas_arc():
        # a fixed ENAS arc: the space's sample from a seeded generator (ENAS arcs use ReLU: the control)
        space = create_space("enas", input_size=64, embedding_size=128)
        return space.build(space.sample(np.random.default_rng(0)))

    def seeded(fn):
        def build():
            torch.manual_seed(0)
            return _calibrate_bn(fn())
        return build

    return {
        "mbf_x0.5": seeded(lambda: get_model("mbf", width_mult=0.5, input_size=64, num_features=512)),
        "mbf_x0.5_relu": seeded(lambda: get_model("mbf", width_mult=0.5, input_size=64, num_features=512, act="relu")),
        "airface": seeded(lambda: get_model("airface", width_mult=0.5, depth_mult=0.34, input_size=64)),
        "r18_x0.25": seeded(lambda: get_model("r18", width_mult=0.25, input_size=64)),
        "ofa_pick": seeded(ofa_pick),
        "enas_arc": seeded(enas_arc),
    }


def _calibrate_bn(model: Any) -> Any:
    """BatchNorm statistics from a few seeded random batches, so fresh weights give unit-scale activations
    (as a trained network's) and the parity check compares embeddings of a realistic size."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
    gen = torch.Generator().manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(16, 3, 64, 64, generator=gen))
    return model.eval()


def _count_ops(proto: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def measure_network(name: str, model: Any, rounds: int, runs: int, min_time: float, tmp: Path) -> dict[str, Any]:
    import onnx

    from facenas.adapters.runtime.latency import onnx_runner, onnx_session, time_runner
    from facenas.adapters.runtime.onnx_export import check_onnx_parity, torch_export
    from facenas.adapters.runtime.tflite_export import TFLiteEmbedder, onnx_to_tflite, tflite_runner

    shape = (3, 64, 64)
    x = np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)
    runners: dict[str, Callable[[], Any]] = {}
    out: dict[str, Any] = {"forms": {}}
    reference: dict[str, np.ndarray] = {}
    for form, passes in FORMS.items():
        path = tmp / f"{name}_{form}.onnx"
        torch_export(model, path, shape, dynamic_batch=False, passes=passes)
        proto = onnx.load(str(path))
        ops = _count_ops(proto)
        if form != "plain" and "PRelu" not in _count_ops(onnx.load(str(tmp / f"{name}_plain.onnx"))):
            continue  # nothing to rewrite: the form is the plain export
        sess = onnx_session(path, 1)
        y_ort = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        tfl = onnx_to_tflite(proto, "nhwc")
        y_tfl = TFLiteEmbedder(tfl, 1)(x)
        entry: dict[str, Any] = {"passes": list(passes), "onnx_nodes": len(proto.graph.node),
                                 "prelu_nodes": ops.get("PRelu", 0)}
        if form == "plain":
            reference = {"onnxruntime": y_ort, "tflite": y_tfl}
        else:
            entry["max_abs_diff_vs_plain"] = {"onnxruntime": float(np.abs(y_ort - reference["onnxruntime"]).max()),
                                              "tflite": float(np.abs(y_tfl - reference["tflite"]).max())}
        out["forms"][form] = entry
        runners[f"onnxruntime/{form}"] = onnx_runner(path, 1)[0]
        runners[f"tflite/{form}"] = tflite_runner(tfl, 1)[0]
    # the export's own parity check (torch vs onnxruntime) on the default export
    default_path = tmp / f"{name}_default.onnx"
    torch_export(model, default_path, shape, dynamic_batch=True)
    out["parity_default_export"] = check_onnx_parity(model, default_path, (64, 64)).to_dict()
    medians: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):  # interleaved: every form sees the same machine load
        for key, run in runners.items():
            times = time_runner(run, warmup=10, runs=runs, min_time_s=min_time, clock="cpu")
            medians[key].append(float(np.median(times) * 1e3))
    for key, values in medians.items():
        runtime, form = key.split("/")
        out["forms"][form].setdefault("latency_ms", {})[runtime] = {"median_ms": float(np.median(values)),
                                                                   "round_medians_ms": values}
    out["best"] = {}
    for runtime in ("onnxruntime", "tflite"):
        ms = {f: e["latency_ms"][runtime]["median_ms"] for f, e in out["forms"].items()}
        best = min(ms, key=ms.get)
        out["best"][runtime] = {"form": best, "ms": ms[best], "plain_ms": ms["plain"],
                                "speedup_vs_plain": ms["plain"] / ms[best]}
    logging.info("%s: %s", name, json.dumps(out["best"]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--min-time", type=float, default=0.2)
    ap.add_argument("--only", nargs="*", help="network names (default: all)")
    ap.add_argument("--name", default="bench_export_passes")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from facenas.adapters.runtime.graph_passes import DEFAULT_PASSES

    nets = _networks()
    chosen = args.only or list(nets)
    result: dict[str, Any] = {"threads": 1, "input_size": [64, 64], "batch": 1, "clock": "cpu",
                              "rounds": args.rounds, "runs": args.runs, "min_time_s": args.min_time,
                              "weights": "fresh (torch.manual_seed(0)), BatchNorm statistics from 4 seeded "
                                         "random batches",
                              "defaults": {k: list(v) for k, v in DEFAULT_PASSES.items()}, "networks": {}}
    with tempfile.TemporaryDirectory(prefix="facenas-passes-") as tmp:
        for name in chosen:
            result["networks"][name] = measure_network(name, nets[name](), args.rounds, args.runs, args.min_time,
                                                       Path(tmp))
    save_result(args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
