"""The OFA rows at CPU scale, read from the record of ``recipes/nni/ofa_cpu.yml`` (nothing is run here).

Every step behind the OFA rows -- the latency tables of onnxruntime and TFLite, the supernet, the
accuracy set, the reference points' latency, the searches under each runtime's table, the chosen
subnets on lfw.bin, their fine-tuning over seeds, the equal-budget reference and the side-by-side
timing -- is a step of the experiment file, so the numbers are the pipeline's::

    facenas nni run-local recipes/nni/ofa_cpu.yml --output runs/ofa_cpu            # resumable
    python -m benchmarks.collect_pipeline runs/ofa_cpu --name ofa_cpu --experiment recipes/nni/ofa_cpu.yml
    python -m benchmarks.bench_ofa [--results benchmarks/results]                  # the summary, as JSON

:func:`summarise` reads a collected record (``benchmarks/results/ofa_cpu.json``; any pipeline of
the same stages, e.g. ``ofa_test.yml``'s) by stage, not by step name: ``runtime.lut`` trials give
each runtime's table; the reference points are the networks a ``runtime.latency`` step timed from
a training recipe (``{"config": ...}``: MobileFaceNet x0.25 and x0.5, untrained -- their accuracy
over seeds is that of the same recipe in the ``reference_front_cpu*.json`` records, by step name);
``ofa.search`` trials give the searches (their runtime: the table they used; their bound's source:
a reference point's measured latency on that runtime or a percentile of the table's predictions);
the exported ``ofa.evaluate`` trials the chosen subnets on the final set; ``ofa.finetune`` trials,
grouped by step, the fine-tuned picks over their fine-tuning seeds (mean +- std over seeds against the
reference's seed runs: Welch's t-test and issue 16's verdict rule, :mod:`benchmarks.seed_stats`); ``engine.train``
with role ``reference`` the equal-budget reference; and ``runtime.latency`` the times (those of the
step that timed several networks in the same rounds, ``side_by_side``, where it ran).
:func:`report_rows` gives the rows of the accuracy report in ``benchmarks/summary.py``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks._records import RESULTS, ok_trials as _ok, read_record, reader_main
from benchmarks.seed_stats import seed_stats, verdict


RECORD = "ofa_cpu"
RUNTIMES = ("onnxruntime", "tflite")


def load_record(results: Path = RESULTS, name: str = RECORD) -> dict[str, Any] | None:
    """The collected record ``results/<name>.json`` (its ``result``), or None when it is not there."""
    return read_record(results, name)


def _sample(trial: dict[str, Any]) -> str | None:
    params = trial.get("params") or {}
    arch = params.get("arch") if isinstance(params.get("arch"), dict) else {}  # an engine.train of an architecture
    sample = (trial.get("arch") or {}).get("sample") or params.get("sample") or arch.get("sample")
    return json.dumps(sample, sort_keys=True) if sample is not None else None


def _close(a: Any, b: Any) -> bool:
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _timings(record: dict[str, Any], model_prefix: str | None) -> list[tuple[bool, dict[str, float], dict[str, Any]]]:
    """Every ``runtime.latency`` timing of the network written under ``model_prefix``, as ``(side by side,
    {runtime: ms}, the timing trial)``: side by side when the step timed several networks in the same rounds
    (``models``)."""
    if not model_prefix:
        return []
    prefix = str(model_prefix).rstrip("/") + "/"
    out = []
    for t in _ok(record, "runtime.latency"):
        p, m = t.get("params") or {}, t.get("metrics", {})
        for name, path in (p.get("models") or {}).items():
            if str(path).startswith(prefix) and isinstance((m.get("latency_ms") or {}).get(name), dict):
                out.append((True, dict(m["latency_ms"][name]), t))
        if str(p.get("model", "")).startswith(prefix):
            out.append((False, {rt: m[f"latency_{rt}_ms"] for rt in RUNTIMES if f"latency_{rt}_ms" in m}, t))
    return out


def _first_timing(record: dict[str, Any], model_prefix: str | None) -> tuple[dict[str, float], dict[str, Any] | None]:
    """The network's times and the trial that took them: the side-by-side step's when there is one, else its own
    step's."""
    timings = sorted(_timings(record, model_prefix), key=lambda t: not t[0])
    return (timings[0][1], timings[0][2] if timings[0][0] else None) if timings else ({}, None)


def _latency_of(record: dict[str, Any], model_prefix: str | None) -> dict[str, float]:
    """The network's times: the side-by-side step's when there is one, else its own step's."""
    return _first_timing(record, model_prefix)[0]


def _acc(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in ("lfw_acc", "lfw_acc_std", "lfw_tar_at_far_1e-3", "mflops", "params_m")}


def _stats(values: list[float]) -> dict[str, Any]:
    """Mean and sample std over seeds (:func:`benchmarks.seed_stats.seed_stats`) as JSON."""
    st = seed_stats(values)
    return {"values": list(st.values), "n": st.n, "mean": st.mean, "std": st.std}


def versus(searched: list[float], reference: list[float], searched_ms: float | None,
           reference_ms: float | None) -> dict[str, Any]:
    """Issue 16's rule (:func:`benchmarks.seed_stats.verdict`: Welch's t-test where both sides have >= 2 seeds,
    ``better`` only with p < 0.05 and >= +1 point, a headline only with >= 3 seeds a side) as JSON."""
    v = verdict(searched, reference, searched_ms, reference_ms)
    return {"verdict": v.label, "reason": v.reason, "difference": v.gain, "p": v.p, "latency_ratio": v.latency_ratio,
            "searched_n": v.searched.n, "reference_n": v.reference.n}


def reference_seeds(results: Path = RESULTS, metric: str = "lfw_acc") -> dict[str, dict[Any, float]]:
    """``{step: {seed: accuracy}}`` of the engine.train trials of every seed run in the reference front's
    records (``reference_front_cpu*.json``: recipes/nni/reference_front_cpu.yml, seeds under ``runs``)."""
    from benchmarks.collect_pipeline import record_runs

    out: dict[str, dict[Any, float]] = {}
    for path in sorted(Path(results).glob("reference_front_cpu*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for run in record_runs(data.get("result") or {}):
            for t in run.get("trials") or []:
                value = (t.get("metrics") or {}).get(metric)
                seed = run.get("seed", (t.get("params") or {}).get("seed"))
                if t.get("stage") == "engine.train" and t.get("status") == "SUCCEEDED" and isinstance(value, (int, float)):
                    out.setdefault(str(t.get("step")), {}).setdefault(seed, float(value))
    return out


def _reference_points(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The networks a runtime.latency step timed from a training recipe, by name: their latency per runtime
    (the side-by-side step's, with the picks, when it ran; else the reference_latency step's)."""
    points: dict[str, dict[str, Any]] = {}
    for t in sorted(_ok(record, "runtime.latency"), key=lambda t: len((t.get("params") or {}).get("models") or {})):
        models, lat = (t.get("params") or {}).get("models") or {}, (t.get("metrics") or {}).get("latency_ms") or {}
        for name, src in models.items():
            if isinstance(src, dict) and "config" in src and isinstance(lat.get(name), dict):
                point = points.setdefault(name, {"model": src, "timed_by": []})
                point["latency_ms"] = dict(lat[name])  # the step timing the most networks wins: side by side
                point["timed_by"].append(t["step"])
    return points


def _bound_source(bound: Any, runtime: str, tables: dict[str, Any], points: dict[str, Any],
                  record: dict[str, Any]) -> str:
    for t in _ok(record, "runtime.latency"):  # a reference point's measured latency (in any step that timed it)
        lat = (t.get("metrics") or {}).get("latency_ms") or {}
        for name in points:
            if _close(bound, (lat.get(name) or {}).get(runtime)):
                return name
    for q in ("p35", "p75"):
        if _close(bound, (tables.get(runtime) or {}).get(f"{q}_ms")):
            return q
    return "given"


def summarise(record: dict[str, Any], results: Path | None = RESULTS, metric: str = "lfw_acc") -> dict[str, Any]:
    """Per runtime: the table, the searches, the fine-tuned picks over seeds vs their reference; the equal budget.

    ``results``: the folder of the ``reference_front_cpu*.json`` records (the references' accuracy over
    seeds; None: not read); ``metric``: the accuracy compared (``lfw_acc``: lfw.bin, the protocol's test set).
    """
    tables = {}
    for t in _ok(record, "runtime.lut"):
        m = t.get("metrics", {})
        tables[m.get("runtime") or (t.get("params") or {}).get("runtime")] = {
            "step": t["step"], **{k: m.get(k) for k in ("entries", "fit_mape", "spearman", "mape", "within_10pct",
                                                          "raw_spearman", "raw_mape", "p35_ms", "p75_ms")},
            "table": (t.get("params") or {}).get("out") or m.get("table")}
    points = _reference_points(record)
    ref_acc = reference_seeds(results, metric) if results is not None else {}
    references = {name: {**p, "step": name, metric: _stats(list(ref_acc.get(name, {}).values())),
                         "seeds": list(ref_acc.get(name, {}))} for name, p in points.items()}
    finals = {}
    for t in _ok(record, "ofa.evaluate"):
        if (t.get("params") or {}).get("export"):
            finals.setdefault(_sample(t), t)
    supernet = next(iter(_ok(record, "ofa.train_supernet")), None)
    evaluated = [t for t in _ok(record, "ofa.evaluate") if not (t.get("params") or {}).get("export")]
    finetunes: dict[str, list[dict[str, Any]]] = {}  # by step: one pick, a trial per fine-tuning seed
    for t in _ok(record, "ofa.finetune"):
        finetunes.setdefault(str(t["step"]), []).append(t)
    retrains: dict[str, list[dict[str, Any]]] = {}  # by step: a pick's architecture from scratch, a trial per seed
    for t in _ok(record, "engine.train"):
        if t.get("role") not in ("reference", "auxiliary") and isinstance((t.get("params") or {}).get("arch"), dict):
            retrains.setdefault(str(t["step"]), []).append(t)
    runtimes: dict[str, Any] = {}
    searches = [t for t in record.get("trials") or [] if t.get("stage") == "ofa.search"]
    for t in sorted(searches, key=lambda t: (str(t.get("step")), t.get("index") or 0)):
        if t.get("status") not in ("SUCCEEDED", "FAILED"):
            continue  # not run yet
        p, m = t.get("params") or {}, t.get("metrics", {})
        cost = p.get("cost")
        lut = cost.get("lut") if isinstance(cost, dict) else None
        runtime = next((rt for rt, tb in tables.items() if lut is not None and tb.get("table") == lut), None)
        if runtime is None:
            runtime = "mflops" if cost == "mflops" else str(lut)
        bound, scale = p.get("bound"), p.get("bound_scale", 1)
        source = _bound_source(bound, runtime, tables, points, record)
        scaled = isinstance(scale, (int, float)) and scale != 1
        entry = {"step": t["step"], "index": t.get("index"), "ranker": p.get("ranker"),
                 "bound_ms": bound * scale if scaled and isinstance(bound, (int, float)) else bound,
                 "bound_from": f"{scale:g}x {source}" if scaled else source, "bound_reference": source,
                 "bound_scale": scale if isinstance(scale, (int, float)) else 1, "runtime": runtime}
        rt = runtimes.setdefault(runtime, {"table": tables.get(runtime), "searches": [], "finetuned": [], "retrained": [],
                                           "failed": []})
        if t.get("status") == "FAILED":  # e.g. a bound below the space's smallest subnet: the message says so
            rt["failed"].append({**entry, "error": t.get("error")})
            continue
        final = finals.get(_sample(t))
        fm = (final or {}).get("metrics", {})
        rt["searches"].append({**entry, "predicted_ms": m.get("best_cost"), "search_seconds": m.get("search_seconds"),
                               "sample": (t.get("arch") or {}).get("sample"), **_acc(fm),
                               "latency_ms": fm.get("latency_ms"), "final_step": (final or {}).get("step")})
    for kind, steps in (("finetuned", finetunes), ("retrained", retrains)):
        for step, runs in steps.items():
            search = _search_of(step, _sample(runs[0]), [e for rt in runtimes.values() for e in rt["searches"]])
            if search is not None:
                runtimes[search["runtime"]][kind].append(
                    _pick(record, runs, search, search["runtime"], references.get(search["bound_reference"]), metric))
    accs = [t.get("metrics", {}).get("lfw_devtest_auc") for t in evaluated]
    accs = [a for a in accs if isinstance(a, (int, float))]
    equal = [t for t in _ok(record, "engine.train") if t.get("role") == "reference"]
    equal_budget = None
    if equal:
        t = equal[0]
        m = t.get("metrics", {})
        p = t.get("params") or {}
        architecture = next((name for name, point in points.items()
                             if point["model"].get("config") == p.get("config")
                             and (point["model"].get("network_kwargs") or {}) == (p.get("network_kwargs") or {})), None)
        own = _latency_of(record, _output_of(t))
        equal_budget = {"step": t["step"], **_acc(m), metric: m.get(metric), "epochs": m.get("epochs"),
                        "seed": p.get("seed"), "train_seconds": m.get("train_seconds"),
                        "network_kwargs": p.get("network_kwargs"), "architecture": architecture,
                        # not timed itself (the last side-by-side step has not run): its architecture's times, the
                        # reference point of the same recipe, untrained -- latency does not depend on the weights
                        "latency_ms": own or dict((points.get(architecture) or {}).get("latency_ms") or {}),
                        "latency_from": t["step"] if own else architecture}
        equal_budget["supernet_epochs"] = _supernet_epochs(supernet)
        equal_budget["vs_picks"] = {rt: [_equal_versus(f, equal_budget, rt, metric) for f in r["finetuned"]]
                                    for rt, r in runtimes.items()}
    return {"pipeline": record.get("pipeline"), "experiment_file": record.get("experiment_file"), "metric": metric,
            "supernet": (supernet or {}).get("metrics"), "references": references, "runtimes": runtimes,
            "equal_budget": equal_budget, "ablation": ablation(record),
            "accuracy_set": {"n": len(evaluated), "lfw_devtest_auc_min": min(accs, default=None),
                             "lfw_devtest_auc_max": max(accs, default=None)},
            "pending_steps": record.get("pending_steps", [])}


def _step_suffix(search: dict[str, Any]) -> str:
    """How a fine-tuning step's name ends for a search's bound: ``mbf_x05``, or ``07x_mbf_x05`` under 0.7x it."""
    scale = search.get("bound_scale", 1)
    source = str(search.get("bound_reference", search["bound_from"]))
    return source if scale == 1 else f"{scale:g}".replace(".", "") + "x_" + source


def _search_of(step: str, sample: str | None, searches: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The search a fine-tuning step's subnet came from: the one whose pick it is; when several searches chose
    the same subnet (e.g. two bounds above every subnet), the one whose bound's source ends the step's name
    (``finetune_onnxruntime_mbf_x05``), else a comparator's."""
    same = [e for e in searches if sample is not None and json.dumps(e["sample"], sort_keys=True) == sample]
    named = [e for e in same if step.endswith("_" + _step_suffix(e))]
    longest = max((len(_step_suffix(e)) for e in named), default=0)  # 07x_mbf_x05 over mbf_x05
    named = [e for e in named if len(_step_suffix(e)) == longest]
    ranked = [e for e in named or same if e["ranker"] == "comparator"] or named or same
    return ranked[0] if ranked else None


def _pick(record: dict[str, Any], runs: list[dict[str, Any]], search: dict[str, Any], runtime: str,
          reference: dict[str, Any] | None, metric: str) -> dict[str, Any]:
    """A fine-tuned (or retrained) pick over its seeds (one trial each) vs the reference whose latency bounded it."""
    runs = sorted(runs, key=lambda t: (str(t["step"]), t.get("index") or 0))
    values = [float(t["metrics"][metric]) for t in runs if isinstance((t.get("metrics") or {}).get(metric), (int, float))]
    latencies = [_latency_of(record, _output_of(t)) for t in runs]
    latency = {rt: _median([lat[rt] for lat in latencies if rt in lat]) for rt in RUNTIMES
               if any(rt in lat for lat in latencies)}
    ms = [t.get("metrics") or {} for t in runs]
    pick = {"step": runs[0]["step"], "search": f"{search['ranker']} under {search['bound_from']}",
            "reference": search["bound_reference"], "sample": search["sample"],
            "seeds": [(t.get("params") or {}).get("seed") for t in runs], metric: _stats(values),
            "lfw_acc_std_folds": [m.get("lfw_acc_std") for m in ms], "epochs": ms[0].get("epochs"),
            "mflops": ms[0].get("mflops"), "params_m": ms[0].get("params_m"),
            "train_seconds_mean": _mean([m.get("train_seconds") for m in ms]),
            "predicted_ms": search.get("predicted_ms"), "latency_ms": latency,
            "latency_ms_stage": [m.get("latency_ms") for m in ms]}
    if reference is not None:
        beside = _reference_beside(record, runs, reference["step"], runtime)
        a, b = latency.get(runtime), beside if beside is not None else (reference.get("latency_ms") or {}).get(runtime)
        pick["vs_reference"] = {"reference": reference["step"], "runtime": runtime, "reference_ms": b, "ofa_ms": a,
                                "reference_" + metric: reference[metric],
                                **versus(values, reference[metric]["values"], a, b)}
    return pick


def _reference_beside(record: dict[str, Any], runs: list[dict[str, Any]], name: str, runtime: str) -> float | None:
    """The reference ``name``'s latency in the timing step that timed each of the pick's networks side by side
    (the one :func:`_latency_of` reads: the same interleaved rounds), the median over the pick's seeds; None when
    no such step timed the reference too."""
    found = []
    for run in runs:
        trial = _first_timing(record, _output_of(run))[1]
        ms = (((trial or {}).get("metrics") or {}).get("latency_ms") or {}).get(name)
        if isinstance(ms, dict) and isinstance(ms.get(runtime), (int, float)):
            found.append(float(ms[runtime]))
    return _median(found)


def stand_in(equal: dict[str, Any]) -> str | None:
    """The reference point whose untrained times stand for the equal-budget network's (None: timed itself)."""
    source = equal.get("latency_from")
    return None if source in (None, equal.get("step")) else str(source)


def _equal_versus(pick: dict[str, Any], equal: dict[str, Any], runtime: str, metric: str) -> dict[str, Any]:
    """A fine-tuned pick (mean over its seeds) vs the equal-budget reference (one seed: no test)."""
    theirs = equal.get(metric)
    a, b = pick["latency_ms"].get(runtime), (equal.get("latency_ms") or {}).get(runtime)
    vs = pick.get("vs_reference") or {}
    source = stand_in(equal)
    if source is not None and vs.get("reference") == source and vs.get("reference_ms") is not None:
        b = vs["reference_ms"]  # its architecture timed in the pick's own rounds
    return {"pick": pick["search"], "ofa_ms": a, "equal_budget_ms": b,
            **versus(pick[metric]["values"], [theirs] if isinstance(theirs, (int, float)) else [], a, b)}


def _supernet_epochs(trial: dict[str, Any] | None) -> float | None:
    """The supernet's epochs in all: its phases' (the config's, else the default progressive shrinking)."""
    if trial is None:
        return None
    config = (trial.get("params") or {}).get("config")
    phases = config.get("phases") if isinstance(config, dict) else None
    if not phases:
        from facenas.plugins.ofa.train import progressive_shrinking_phases

        phases = progressive_shrinking_phases()
    return float(sum(float(p.get("epochs", 0)) for p in phases))


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(nums) / len(nums) if nums else None


def _median(values: list[float]) -> float | None:
    nums = sorted(float(v) for v in values)
    if not nums:
        return None
    mid = len(nums) // 2
    return nums[mid] if len(nums) % 2 else (nums[mid - 1] + nums[mid]) / 2


def _output_of(trial: dict[str, Any]) -> str | None:
    """The training folder of an engine.train / ofa.finetune trial (``<trial folder>/train``)."""
    out = (trial.get("metrics") or {}).get("output")
    return str(out) if out else None


#: the ablation's steps (recipes/nni/ofa_cpu.yml): the pick's variants and MobileFaceNet at the same budget
ABLATION_STEPS = ("ablation_07x", "ablation_reference")


def ablation_variant(params: dict[str, Any]) -> str:
    """An ablation trial's network in words, from its parameters: the pick ``as searched`` or with the space
    options it overrides (no SE, ReLU for h-swish), or the hand-designed network it trains."""
    kwargs = params.get("network_kwargs") or {}
    if not isinstance(params.get("arch"), dict):
        width = kwargs.get("width_mult")
        rest = ", ".join(f"{k} {v}" for k, v in kwargs.items() if k != "width_mult")
        return "MobileFaceNet" + (f" x{width:g}" if isinstance(width, (int, float)) else "") + (f", {rest}" if rest else "")
    over = kwargs.get("space_config") or {}
    words = []
    acts = {a for a in over.get("stage_activations") or []} | {over[k] for k in ("stem_activation", "head_activation")
                                                               if k in over}
    if acts:
        words.append("ReLU for h-swish" if acts == {"relu"} else "activations " + "/".join(sorted(acts)))
    if "stage_se" in over:
        words.append("no SE" if not any(over["stage_se"]) else "SE " + "".join("1" if v else "0" for v in over["stage_se"]))
    rest = sorted(set(over) - {"stage_activations", "stem_activation", "head_activation", "stage_se"})
    words += [f"{k} {json.dumps(over[k])}" for k in rest]
    return "pick, " + ", ".join(words) if words else "pick as searched"


def ablation(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The ablation's networks (the pick's variants, then the reference) with their final training loss, LFW
    accuracy, cost and budget; ``[]`` until a trial of it is recorded."""
    rows = []
    for step in ABLATION_STEPS:
        for t in sorted(_ok(record, "engine.train"), key=lambda t: t.get("index") or 0):
            if t.get("step") != step:
                continue
            p, m = t.get("params") or {}, t.get("metrics") or {}
            rows.append({"step": step, "index": t.get("index"), "network": ablation_variant(p), "loss": m.get("loss"),
                         **_acc(m), "epochs": m.get("epochs"), "seed": p.get("seed"),
                         "train_seconds": m.get("train_seconds")})
    return rows


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
        for kind, ft in [("fine-tuned", f) for f in rt.get("finetuned") or []] + [
                ("retrained from scratch", f) for f in rt.get("retrained") or []]:
            lat = ft.get("latency_ms") or {}
            acc = ft.get("lfw_acc") or {}
            scratch = kind != "fine-tuned"
            rows.append({"method": f"OFA + comparator, {kind}", "network": f"ofa [{runtime}] {ft['search']}, {kind}",
                         "lfw_acc": acc.get("mean"), "lfw_acc_std": acc.get("std"),
                         **{k: ft.get(k) for k in ("mflops", "params_m")}, "latency_ms": lat.get("onnxruntime"),
                         "time_min": round((0 if scratch else supernet_min) + (ft.get("train_seconds_mean") or 0) / 60, 1),
                         "budget": (f"{_ms(ft.get('epochs'))} epochs from scratch (the reference's recipe)" if scratch else
                                    f"supernet + {_ms(ft.get('epochs'))} epochs fine-tuning")
                                   + f"; mean ± std over {acc.get('n')} seed(s); TFLite {_ms(lat.get('tflite'))} ms"})
    eq = s.get("equal_budget")
    if eq:
        lat, source = eq.get("latency_ms") or {}, stand_in(eq)
        rows.append({"method": "baseline (hand-designed), equal budget", "network": f"{eq['step']} (mbf "
                     f"{json.dumps(eq.get('network_kwargs') or {})})", **{k: eq.get(k) for k in (
                         "lfw_acc", "lfw_acc_std", "mflops", "params_m")}, "tar": eq.get("lfw_tar_at_far_1e-3"),
                     "latency_ms": lat.get("onnxruntime"), "time_min": round((eq.get("train_seconds") or 0) / 60, 1),
                     "budget": f"{_ms(eq.get('epochs'))} epochs (supernet + fine-tuning), seed {eq.get('seed')}; "
                               f"TFLite {_ms(lat.get('tflite'))} ms"
                               + (f" (times: its architecture, {source}, untrained)" if source else "")})
    return rows


def _ms(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


def main(argv=None) -> dict[str, Any]:
    return reader_main(argv, __doc__.splitlines()[0], RECORD, "recipes/nni/ofa_cpu.yml", summarise)


if __name__ == "__main__":
    main()
