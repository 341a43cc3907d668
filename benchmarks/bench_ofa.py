"""The OFA rows at CPU scale, read from the record of ``recipes/nni/ofa_cpu.yml`` (nothing is run here).

Every step behind the OFA rows -- the latency tables of onnxruntime and TFLite, the supernet, the
accuracy set, the hand-designed reference and its latency, the searches under each runtime's
table, the chosen subnets on lfw.bin, their fine-tuning and the side-by-side timing -- is a step
of the experiment file, so the numbers are the pipeline's::

    facenas nni run-local recipes/nni/ofa_cpu.yml --output runs/ofa_cpu            # resumable
    python -m benchmarks.collect_pipeline runs/ofa_cpu --name ofa_cpu --experiment recipes/nni/ofa_cpu.yml
    python -m benchmarks.bench_ofa [--results benchmarks/results]                  # the summary, as JSON

:func:`summarise` reads a collected record (``benchmarks/results/ofa_cpu.json``; any pipeline of
the same stages, e.g. ``ofa_test.yml``'s) by stage, not by step name: ``runtime.lut`` trials give
each runtime's table, ``ofa.search`` trials the searches (their runtime: the table they used;
their bound's source: the reference's measured latency or a percentile of the table's
predictions), the exported ``ofa.evaluate`` trials the chosen subnets on the final set,
``ofa.finetune`` the fine-tuned ones, ``engine.train`` with role ``reference`` the reference and
``runtime.latency`` the times (those of the step that timed the reference and the fine-tuned
subnets in the same rounds, ``side_by_side``, where it ran). :func:`report_rows` gives the rows of the accuracy
report in ``benchmarks/summary.py``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
RECORD = "ofa_cpu"
RUNTIMES = ("onnxruntime", "tflite")


def load_record(results: Path = RESULTS, name: str = RECORD) -> dict[str, Any] | None:
    """The collected record ``results/<name>.json`` (its ``result``), or None when it is not there."""
    path = Path(results) / f"{name}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return {**data.get("result", {}), "_date": data.get("date"), "_command": data.get("command")}


def _ok(record: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    trials = [t for t in record.get("trials", []) if t.get("stage") == stage and t.get("status") == "SUCCEEDED"]
    return sorted(trials, key=lambda t: (str(t.get("step")), t.get("index") or 0))


def _sample(trial: dict[str, Any]) -> str | None:
    sample = (trial.get("arch") or {}).get("sample") or (trial.get("params") or {}).get("sample")
    return json.dumps(sample, sort_keys=True) if sample is not None else None


def _close(a: Any, b: Any) -> bool:
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _timings(record: dict[str, Any], model_prefix: str | None) -> list[tuple[bool, dict[str, float]]]:
    """Every ``runtime.latency`` timing of the network written under ``model_prefix``, as ``(side by side,
    {runtime: ms})``: side by side when the step timed several networks in the same rounds (``models``)."""
    if not model_prefix:
        return []
    prefix = str(model_prefix).rstrip("/") + "/"
    out = []
    for t in _ok(record, "runtime.latency"):
        p, m = t.get("params") or {}, t.get("metrics", {})
        for name, path in (p.get("models") or {}).items():
            if str(path).startswith(prefix) and isinstance((m.get("latency_ms") or {}).get(name), dict):
                out.append((True, dict(m["latency_ms"][name])))
        if str(p.get("model", "")).startswith(prefix):
            out.append((False, {rt: m[f"latency_{rt}_ms"] for rt in RUNTIMES if f"latency_{rt}_ms" in m}))
    return out


def _latency_of(record: dict[str, Any], model_prefix: str | None) -> dict[str, float]:
    """The network's times: the side-by-side step's when there is one, else its own step's."""
    timings = sorted(_timings(record, model_prefix), key=lambda t: not t[0])
    return timings[0][1] if timings else {}


def _acc(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in ("lfw_acc", "lfw_acc_std", "lfw_tar_at_far_1e-3", "mflops", "params_m")}


def summarise(record: dict[str, Any]) -> dict[str, Any]:
    """Per runtime: the table, the searches with their chosen subnets, the fine-tuned subnet, vs the reference."""
    tables = {}
    for t in _ok(record, "runtime.lut"):
        m = t.get("metrics", {})
        tables[m.get("runtime") or (t.get("params") or {}).get("runtime")] = {
            "step": t["step"], **{k: m.get(k) for k in ("entries", "fit_mape", "spearman", "mape", "within_10pct",
                                                          "raw_spearman", "raw_mape", "p35_ms", "p75_ms")},
            "table": (t.get("params") or {}).get("out") or m.get("table")}
    refs = [t for t in _ok(record, "engine.train") if t.get("role") == "reference"]
    reference = None
    if refs:
        ref = refs[0]
        m = ref.get("metrics", {})
        reference = {"step": ref["step"], **_acc(m), "epochs": m.get("epochs"), "params": ref.get("params"),
                     "output": _output_of(ref), "latency_ms": _latency_of(record, _output_of(ref))}
    finals = {}
    for t in _ok(record, "ofa.evaluate"):
        if (t.get("params") or {}).get("export"):
            finals.setdefault(_sample(t), t)
    supernet = next(iter(_ok(record, "ofa.train_supernet")), None)
    evaluated = [t for t in _ok(record, "ofa.evaluate") if not (t.get("params") or {}).get("export")]
    finetunes = {_sample(t): t for t in _ok(record, "ofa.finetune")}
    runtimes: dict[str, Any] = {}
    for t in _ok(record, "ofa.search"):
        p, m = t.get("params") or {}, t.get("metrics", {})
        cost = p.get("cost")
        lut = cost.get("lut") if isinstance(cost, dict) else None
        runtime = next((rt for rt, tb in tables.items() if lut is not None and tb.get("table") == lut), None)
        if runtime is None:
            runtime = "mflops" if cost == "mflops" else str(lut)
        bound = p.get("bound")
        source = "given"
        if reference and any(_close(bound, lat.get(runtime)) for _, lat in _timings(record, reference["output"])):
            source = "reference"  # the reference's measured latency on that runtime (reference_latency)
        for q in ("p35", "p75"):
            if _close(bound, (tables.get(runtime) or {}).get(f"{q}_ms")):
                source = q
        final = finals.get(_sample(t))
        fm = (final or {}).get("metrics", {})
        entry = {"step": t["step"], "index": t.get("index"), "ranker": p.get("ranker"), "bound_ms": bound,
                 "bound_from": source, "predicted_ms": m.get("best_cost"), "search_seconds": m.get("search_seconds"),
                 "sample": (t.get("arch") or {}).get("sample"), **_acc(fm),
                 "latency_ms": fm.get("latency_ms"), "final_step": (final or {}).get("step")}
        rt = runtimes.setdefault(runtime, {"table": tables.get(runtime), "searches": []})
        rt["searches"].append(entry)
        ft = finetunes.get(_sample(t))
        if ft is not None and "finetuned" not in rt:
            fm = ft.get("metrics", {})
            rt["finetuned"] = {"step": ft["step"], "search": f"{entry['ranker']} under {source}", **_acc(fm),
                               "epochs": fm.get("epochs"), "train_seconds": fm.get("train_seconds"),
                               "predicted_ms": entry["predicted_ms"], "latency_ms": _latency_of(record, _output_of(ft)),
                               "latency_ms_stage": fm.get("latency_ms")}
            if reference:
                rt["vs_reference"] = _versus(rt["finetuned"], reference, runtime)
    accs = [t.get("metrics", {}).get("lfw_devtest_auc") for t in evaluated]
    accs = [a for a in accs if isinstance(a, (int, float))]
    return {"pipeline": record.get("pipeline"), "experiment_file": record.get("experiment_file"),
            "supernet": (supernet or {}).get("metrics"), "reference": reference, "runtimes": runtimes,
            "accuracy_set": {"n": len(evaluated), "lfw_devtest_auc_min": min(accs, default=None),
                             "lfw_devtest_auc_max": max(accs, default=None)},
            "pending_steps": record.get("pending_steps", [])}


def _output_of(trial: dict[str, Any]) -> str | None:
    """The training folder of an engine.train / ofa.finetune trial (``<trial folder>/train``)."""
    out = (trial.get("metrics") or {}).get("output")
    return str(out) if out else None


def _versus(ft: dict[str, Any], ref: dict[str, Any], runtime: str) -> dict[str, Any]:
    """Fine-tuned subnet vs the reference on ``runtime`` (accuracy difference, latency ratio)."""
    a, b = ft.get("latency_ms", {}).get(runtime), ref.get("latency_ms", {}).get(runtime)
    out: dict[str, Any] = {"runtime": runtime, "reference_lfw_acc": ref.get("lfw_acc"), "ofa_lfw_acc": ft.get("lfw_acc"),
                           "reference_ms": b, "ofa_ms": a}
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        out["latency_ratio"] = a / b
    if isinstance(ft.get("lfw_acc"), (int, float)) and isinstance(ref.get("lfw_acc"), (int, float)):
        out["lfw_acc_difference"] = ft["lfw_acc"] - ref["lfw_acc"]
    return out


def report_rows(results: Path = RESULTS) -> list[dict[str, Any]]:
    """Rows of the CPU-scale accuracy report (``benchmarks/summary.py``) from the ofa_cpu record."""
    record = load_record(results)
    if not record:
        return []
    s = summarise(record)
    sup = s.get("supernet") or {}
    supernet_min = round((sup.get("train_seconds") or 0) / 60, 1)
    rows = []
    for runtime, rt in s["runtimes"].items():
        for e in rt["searches"]:
            lat = e.get("latency_ms")
            rows.append({"method": "OFA + comparator" if e["ranker"] == "comparator" else "OFA + MLP predictor",
                         "network": f"ofa [{runtime}] bound {e['bound_from']}", **{k: e.get(k) for k in (
                             "lfw_acc", "lfw_acc_std", "mflops", "params_m")},
                         "tar": e.get("lfw_tar_at_far_1e-3"),
                         "latency_ms": lat if runtime == "onnxruntime" else None,
                         "time_min": supernet_min,
                         "search_min": round(e["search_seconds"] / 60, 3) if e.get("search_seconds") else None,
                         "budget": f"supernet weights, BN recalibrated, no fine-tuning; {runtime} "
                                   f"{_ms(lat)} ms measured, {_ms(e.get('predicted_ms'))} ms predicted"})
        ft = rt.get("finetuned")
        if ft:
            lat = ft.get("latency_ms") or {}
            rows.append({"method": "OFA + comparator, fine-tuned", "network": f"ofa [{runtime}] {ft['search']}, fine-tuned",
                         **{k: ft.get(k) for k in ("lfw_acc", "lfw_acc_std", "mflops", "params_m")},
                         "tar": ft.get("lfw_tar_at_far_1e-3"), "latency_ms": lat.get("onnxruntime"),
                         "time_min": round(supernet_min + (ft.get("train_seconds") or 0) / 60, 1),
                         "budget": f"supernet + {_ms(ft.get('epochs'))} epochs fine-tuning; TFLite {_ms(lat.get('tflite'))} ms"})
    return rows


def _ms(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


def main(argv=None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS), help="folder holding the collected record")
    ap.add_argument("--record", default=RECORD, help="record name: <results>/<record>.json (collect_pipeline --name)")
    args = ap.parse_args(argv)
    record = load_record(Path(args.results), args.record)
    if record is None:
        raise SystemExit(f"{Path(args.results) / (args.record + '.json')} has not been recorded: run `facenas nni run-local "
                         "recipes/nni/ofa_cpu.yml --output OUT` and `python -m benchmarks.collect_pipeline OUT --name "
                         "ofa_cpu --experiment recipes/nni/ofa_cpu.yml`")
    out = summarise(record)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
