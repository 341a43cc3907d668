"""Regenerate the results tables and the accuracy-vs-latency plot from the recorded benchmark JSON.

    python -m benchmarks.summary [--results benchmarks/results]   # -> summary.md, summary.png there

Reads only what the benchmarks recorded (``benchmarks/results/*.json``); a benchmark that has not
been run is listed as missing, never filled in. Sections: data-layer speed ratios, LUT prediction
error, the accuracy report at CPU scale (celeba299 -> lfw.bin: baselines and each method, with the
budget of every number), Li-ArcFace vs ArcFace, TNAS Table 3, ENAS, OFA (from the record of
recipes/nni/ofa_cpu.yml), deployment latency,
export graph passes, bad-input counts, NNI per-trial overhead and MS1M-scale data.
The plot takes every network with both an LFW accuracy and a measured onnxruntime 1-thread
latency (``bench_deploy``) and marks the Pareto front.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"


def _load(results: Path, name: str) -> dict[str, Any] | None:
    f = results / f"{name}.json"
    if not f.is_file():
        return None
    data = json.loads(f.read_text(encoding="utf-8"))
    return {**data.get("result", {}), "_date": data.get("date"), "_command": data.get("command")}


def _f(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _acc(acc: Any, std: Any) -> str:
    return "–" if acc is None else f"{acc:.4f} ± {std:.4f}" if isinstance(std, (int, float)) else f"{acc:.4f}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(out)


def _missing(name: str, how: str) -> str:
    return f"_missing: `benchmarks/results/{name}.json` has not been recorded (run `{how}`)._"


# -- sections ------------------------------------------------------------------------------------
def section_data(results: Path) -> str:
    lines = ["## Data layer speed (ratios measured side by side in one run)"]
    rows = []
    r = _load(results, "bench_recordio")
    if r:
        rows.append(["RecordIO read + decode vs mxnet 1.9.1 `MXIndexedRecordIO` + `imdecode`", r.get("speedup_vs_mxnet"),
                     f"CPU-time ratio {_f(r.get('cpu_time_ratio_vs_mxnet'), 2)}; vs image files {_f(r.get('facenas_vs_image_files'), 2)}",
                     r.get("goal_speedup_vs_mxnet")])
    r = _load(results, "bench_verification")
    if r:
        rows.append(["verification metrics vs the reference loops (12,000 embeddings)", r.get("speedup"),
                     f"bit-identical: {_f(r.get('all_bit_identical'))}", r.get("goal_speedup")])
    r = _load(results, "bench_load_bin")
    if r:
        rows.append(["loading lfw.bin vs arcface_torch `load_bin`", r.get("speedup_1_thread"),
                     f"2 threads {_f(r.get('speedup_2_threads'), 2)}x; pixels identical: {_f(r.get('pixels_identical_to_reference'))}",
                     r.get("goal_speedup")])
    r = _load(results, "bench_supernet_step")
    if r and isinstance(r.get("ratio_supernet_vs_static"), (int, float)):
        rows.append(["OFA supernet training step time / extracted static subnet's (largest subnet; a time ratio, not a speed-up)",
                     r["ratio_supernet_vs_static"],
                     "; ".join(f"{k}: {v['ratio']}x time" for k, v in r.get("subnets", {}).items()), None])
    ofa = _ofa(results)
    times: dict[str, list[float]] = {}
    for rt in (ofa or {}).get("runtimes", {}).values():
        for e in rt["searches"]:
            if isinstance(e.get("search_seconds"), (int, float)):
                times.setdefault(e["ranker"], []).append(e["search_seconds"])
    if times.get("comparator") and times.get("mlp"):
        comp, mlp = (sum(times[k]) / len(times[k]) for k in ("comparator", "mlp"))
        rows.append(["Algorithm 1 (QuickSelect evolution, latency table) with the comparator: time vs the MLP predictor's",
                     round(comp / mlp, 2), f"comparator {comp:.2f} s, MLP {mlp:.2f} s per search (ofa_cpu.yml searches)",
                     None])
    lines.append(_table(["what", "ratio (x)", "notes", "goal (x)"], rows) if rows else
                 _missing("bench_recordio", "python -m benchmarks.bench_recordio"))
    return "\n\n".join(lines)


def section_lut(results: Path) -> str:
    r = _load(results, "bench_lut")
    head = "## Latency lookup tables: prediction vs measurement"
    if not r:
        return head + "\n\n" + _missing("bench_lut", "python -m benchmarks.bench_lut")
    rows = [[rt, v.get("num_subnets"), v.get("spearman"), 100 * v["mape"] if isinstance(v.get("mape"), float) else None,
             v.get("raw_spearman"), v.get("goal_met")] for rt, v in r.get("runtimes", {}).items()]
    return head + f"\n\n{r.get('space')} space {json.dumps(r.get('space_config'))}, {r.get('threads')} thread(s); " \
                  "goal Spearman >= 0.95, MAPE <= 10%.\n\n" + \
        _table(["runtime", "subnets", "Spearman", "MAPE %", "uncorrected Spearman", "goal met"], rows)


def _row(method: str, network: str, rec: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A report row: accuracy, MFLOPs and params from ``rec`` unless ``fields`` give them."""
    row = {"method": method, "network": network, "lfw_acc": rec.get("lfw_acc"), "lfw_acc_std": rec.get("lfw_acc_std"),
           "mflops": rec.get("mflops"), "params_m": rec.get("params_m")}
    row.update(fields)
    return row


def _report_rows(results: Path) -> list[dict[str, Any]]:
    """One row per network of the accuracy report (CPU scale, celeba299 -> lfw.bin)."""
    rows: list[dict[str, Any]] = []
    baseline_files = ["bench_baselines"] + sorted(f.stem for f in results.glob("bench_baselines_*.json"))
    for file in baseline_files:  # the untagged run and the tagged ones (`bench_baselines --tag T`)
        for name, run in ((_load(results, file) or {}).get("runs") or {}).items():
            rows.append(_row("baseline (hand-designed)", f"{run.get('network')} {json.dumps(run.get('network_kwargs') or {})}",
                             run, tar=run.get("lfw_tar_at_far_1e-3"), time_min=run.get("train_minutes"),
                             checkpoint=(run.get("artifacts") or "") + "/best.pt",
                             budget=f"{run.get('epochs')} epochs, lr {run.get('config', {}).get('lr')}, {run.get('config', {}).get('threads')} thread(s)"))
    r = _load(results, "bench_tnas_table3")
    if r:
        search_min = ((r.get("steps") or {}).get("search") or {}).get("search_minutes")
        names = {"teacher": "TNAS teacher (MobileFaceNet, the baseline recipe: its Nov-22 run)", "tnas_fkd": "TNAS (searched, FKD)",
                 "uniform_fkd": "uniformly narrowed IResNet-18 x0.25 (FKD)",
                 "uniform_margin": "baseline: uniformly narrowed IResNet-18 x0.25 (margin loss)"}
        for name, step in r.get("steps", {}).items():
            if name == "search":
                continue
            art = r.get("artifacts") or ""
            rows.append(_row(names.get(name, name), name, step, tar=step.get("lfw_tar_at_far_1e-3"),
                             time_min=step.get("train_minutes"), search_min=search_min if name == "tnas_fkd" else None,
                             checkpoint=os.path.join(art, name, "best.pt") if art else None,
                             budget=f"{step.get('epochs')} epochs"))
    r = _load(results, "bench_enas")
    if r:
        search_s = (r.get("search_tight") or {}).get("search_seconds")
        for name, row in (r.get("retrain") or {}).items():
            if row:
                art = r.get("artifacts") or ""
                top = name.startswith("top")
                rows.append(_row("ENAS-style (retrained)" if top else "random arc (same budget)", f"enas {name}", row,
                                 tar=row.get("lfw_tar_at_far_1e-3"), latency_lut_ms=row.get("latency_ms"),
                                 time_min=row.get("wall_minutes"),
                                 search_min=round(search_s / 60, 1) if top and isinstance(search_s, (int, float)) else None,
                                 checkpoint=os.path.join(art, "retrain", name, "train", "best.pt") if art else None,
                                 budget=f"{(r.get('budget') or {}).get('retrain_epochs')} epochs"))
    from benchmarks.bench_ofa import report_rows

    rows += report_rows(results)  # the OFA rows: recipes/nni/ofa_cpu.yml's record
    return rows


def _deploy_models(results: Path) -> dict[str, dict[str, Any]]:
    """Every model timed by ``bench_deploy`` (``bench_deploy*.json``, ``--name``), by path; a later run's
    measurement of the same file replaces an earlier one."""
    runs = [r for r in (_load(results, f.stem) for f in results.glob("bench_deploy*.json")) if r]
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(runs, key=lambda r: r.get("_date") or ""):
        for m in r.get("models", []):
            for path in m.get("stands_for") or [m["model"]]:  # an architecture-only file times a lost checkpoint
                out[os.path.normpath(path)] = {**m, "_threads": r.get("threads"), "_date": r.get("_date")}
    return out


def _deploy_latency(results: Path) -> dict[str, float]:
    return {k: m["latency"]["onnxruntime"]["median_ms"] for k, m in _deploy_models(results).items()}


def section_report(results: Path) -> tuple[str, list[dict[str, Any]]]:
    rows = _report_rows(results)
    lat = _deploy_latency(results)
    for row in rows:
        ck = os.path.normpath(row.get("checkpoint") or "")
        if ck in lat:
            row["latency_ms"] = lat[ck]
    head = "## Accuracy report at CPU scale (celeba299 -> lfw.bin, benchmarks/PROTOCOL.md)"
    if not rows:
        return head + "\n\n_missing: no method or baseline results recorded yet._", rows
    table = _table(["method", "network", "LFW acc ± std (10 folds)", "TAR@FAR=1e-3", "latency ms (ORT, 1 thread)",
                    "MFLOPs", "params (M)", "train min", "search min", "budget"],
                   [[r["method"], r["network"], _acc(r.get("lfw_acc"), r.get("lfw_acc_std")), r.get("tar"),
                     r.get("latency_ms", r.get("latency_lut_ms")), r.get("mflops"), r.get("params_m"), r.get("time_min"),
                     r.get("search_min"), r.get("budget")] for r in rows])
    dates = sorted({str(m.get("_date", ""))[:10] for m in _deploy_models(results).values()} - {""})
    note = ("Latency: measured by `bench_deploy` where present (runs of " + ", ".join(dates) + "; a network timed in "
            "an earlier run than the others, e.g. one whose weights and architecture file were not kept, compares "
            "only roughly: this shared VM's speed drifts between days); ENAS rows without it show the lookup-table "
            "prediction. Train min: training time of the network (OFA: the supernet's, plus fine-tuning where done); "
            "search min: the search itself (TNAS: the Gumbel search; ENAS: the controller search; OFA: one evolution "
            "with the ranker, on top of the supernet and the accuracy set). Methods without a row have not been run "
            "at CPU scale yet.")
    return f"{head}\n\n{table}\n\n{note}", rows


def section_li_arcface(results: Path) -> str:
    r = _load(results, "bench_li_arcface")
    head = "## Li-ArcFace vs ArcFace (MobileFaceNet, 128-d, from scratch, same settings)"
    if not r:
        return head + "\n\n" + _missing("bench_li_arcface", "python -m benchmarks.bench_li_arcface")
    rows = [[name, run.get("diverged", run.get("nan")), _acc(run.get("lfw_acc"), run.get("lfw_acc_std")), run.get("train_minutes")]
            for name, run in r.get("runs", {}).items()]
    return head + "\n\n" + _table(["head", "diverged (NaN/inf)", "LFW acc ± std", "train min"], rows)


def section_enas(results: Path) -> str:
    r = _load(results, "bench_enas")
    head = "## ENAS-style search: controller learning and the latency term"
    if not r:
        return head + "\n\n" + _missing("bench_enas", "python -m benchmarks.bench_enas report")
    lines = [head]
    first_last = r.get("sampled_latency_first_last_ms") or {}
    entropy = r.get("entropy_first_last") or {}
    targets = r.get("targets_ms") or {}
    rows = []
    for name in first_last:
        search = r.get(f"search_{name}") or {}
        st = search.get("settings") or {}
        rows.append([name, st.get("target_ms", targets.get(st.get("target", name))), st.get("exponent"),
                     f"{first_last[name][0]:.4f} -> {first_last[name][1]:.4f}",
                     f"{entropy.get(name, [None, None])[0]:.2f} -> {entropy.get(name, [None, None])[1]:.2f}"
                     if name in entropy else "–", search.get("val_acc"),
                     round(search["search_seconds"] / 60, 1) if search.get("search_seconds") else None])
    if rows:
        lines.append(_table(["search", "target T (ms)", "q", "sampled latency ms (first 2 -> last 2 epochs)",
                             "policy entropy (first -> last)", "best arc val acc", "min"], rows))
    lines.append(f"Mean LFW accuracy of the retrained top-3 vs random arcs of similar latency: "
                 f"{json.dumps(r.get('mean_lfw_acc'))}.")
    if r.get("curves_png"):
        lines.append(f"![ENAS curves]({Path(r['curves_png']).name})")
    return "\n\n".join(lines)


def _ofa(results: Path) -> dict[str, Any] | None:
    from benchmarks.bench_ofa import load_record, summarise

    record = load_record(results)
    return summarise(record) if record else None


def section_ofa(results: Path) -> str:
    """OFA per runtime from the record of recipes/nni/ofa_cpu.yml: table, searches, fine-tuned subnet vs reference."""
    head = "## OFA + LightGBM comparator vs MLP predictor, per runtime (recipes/nni/ofa_cpu.yml)"
    s = _ofa(results)
    if not s:
        return head + "\n\n" + _missing("ofa_cpu", "facenas nni run-local recipes/nni/ofa_cpu.yml --output OUT; python -m "
                                        "benchmarks.collect_pipeline OUT --name ofa_cpu --experiment recipes/nni/ofa_cpu.yml")
    parts = [head]
    acc = s.get("accuracy_set") or {}
    parts.append(f"Accuracy set: {acc.get('n')} subnets (lfw_devtest AUC {_f(acc.get('lfw_devtest_auc_min'))} - "
                 f"{_f(acc.get('lfw_devtest_auc_max'))}). Not run yet: {', '.join(s.get('pending_steps') or []) or 'none'}.")
    ref = s.get("reference") or {}
    for runtime, rt in s.get("runtimes", {}).items():
        tb = rt.get("table") or {}
        parts.append(f"### {runtime}\n\nLatency table: {tb.get('entries')} blocks, validation Spearman "
                     f"{_f(tb.get('spearman'))}, MAPE {_f(tb.get('mape'))}, within +-10% {_f(tb.get('within_10pct'))}; "
                     f"predicted p35 / p75 of random subnets {_f(tb.get('p35_ms'))} / {_f(tb.get('p75_ms'))} ms.")
        parts.append(_table(["ranker", "bound from", "bound ms", "predicted ms", f"measured ms ({runtime})",
                             "LFW acc ± std (supernet weights)", "MFLOPs", "search s"],
                            [[e["ranker"], e["bound_from"], e.get("bound_ms"), e.get("predicted_ms"), e.get("latency_ms"),
                              _acc(e.get("lfw_acc"), e.get("lfw_acc_std")), e.get("mflops"), e.get("search_seconds")]
                             for e in rt["searches"]]))
        ft = rt.get("finetuned")
        if ft:
            lat = ft.get("latency_ms") or {}
            rows = [["reference " + str(ref.get("step")), _acc(ref.get("lfw_acc"), ref.get("lfw_acc_std")),
                     (ref.get("latency_ms") or {}).get("onnxruntime"), (ref.get("latency_ms") or {}).get("tflite"),
                     ref.get("mflops"), ref.get("epochs")],
                    [f"OFA {ft['search']}, fine-tuned", _acc(ft.get("lfw_acc"), ft.get("lfw_acc_std")),
                     lat.get("onnxruntime"), lat.get("tflite"), ft.get("mflops"), ft.get("epochs")]]
            parts.append(_table(["network", "LFW acc ± std", "ORT ms", "TFLite ms", "MFLOPs", "epochs"], rows))
    return "\n\n".join(parts)


def section_deploy(results: Path, report_rows: list[dict[str, Any]] | None = None) -> str:
    models = _deploy_models(results)
    recorded = {os.path.normpath(x["checkpoint"]): x.get("lfw_acc") for x in report_rows or [] if x.get("checkpoint")}
    labels = {os.path.normpath(x["checkpoint"]): f"{x['method']}: {x['network']}" for x in report_rows or [] if x.get("checkpoint")}
    head = "## Deployment: latency of the final networks (batch 1) next to LFW accuracy"
    if not models:
        return head + "\n\n" + _missing("bench_deploy", "python -m benchmarks.bench_deploy --models ...")
    rows = [[labels.get(path, os.path.basename(os.path.dirname(m["model"])) + "/" + os.path.basename(m["model"])),
             m.get("mflops"), m["latency"]["onnxruntime"]["median_ms"], m["latency"].get("tflite_float32", {}).get("median_ms"),
             (m.get("torch") or {}).get("lfw_acc", recorded.get(path)), (m.get("tflite_float32") or {}).get("lfw_acc")]
            for path, m in models.items()]
    threads = sorted({m.get("_threads") for m in models.values()}, key=str)
    return head + f"\n\n{', '.join(map(str, threads))} thread(s).\n\n" + _table(
        ["model", "MFLOPs", "ORT ms", "TFLite ms", "LFW acc (torch; from its record if not re-measured)",
         "LFW acc (TFLite fp32)"], rows)


def section_reference_front(results: Path) -> str:
    """Hand-designed reference networks of ``recipes/nni/reference_front_cpu.yml`` (as far as the run got)."""
    title = "## Hand-designed reference front (recipes/nni/reference_front_cpu.yml)"
    r = _load(results, "reference_front_cpu")
    if not r:
        return title + "\n\n" + _missing("reference_front_cpu", "facenas nni run-local recipes/nni/reference_front_cpu.yml "
                                           "--output OUT; python -m benchmarks.collect_pipeline OUT --name "
                                           "reference_front_cpu --experiment recipes/nni/reference_front_cpu.yml")
    by_step = {t["step"]: t for t in r.get("trials", []) if t.get("status") == "SUCCEEDED"}
    rows = []
    for step, t in by_step.items():
        if t.get("stage") != "engine.train":
            continue
        m, lat = t.get("metrics", {}), by_step.get(f"{step}_latency", {}).get("metrics", {})
        params = t.get("params") or {}
        rows.append([step, f"{params.get('network_kwargs')}", _acc(m.get("lfw_acc"), m.get("lfw_acc_std")),
                     m.get("lfw_tar_at_far_1e-3"), lat.get("latency_onnxruntime_ms"), lat.get("latency_tflite_ms"),
                     m.get("mflops"), m.get("params_m"), f"{_f(m.get('epochs'), 0)} epochs, seed {params.get('seed')}"])
    pending = r.get("pending_steps") or []
    return "\n\n".join([title, _table(["step", "network", "LFW acc ± std", "TAR@FAR=1e-3", "ORT ms", "TFLite ms",
                                        "MFLOPs", "params (M)", "budget"], rows),
                         f"One seed each, 1 thread, batch 1, 64 px, each runtime's default export. Not run yet: "
                         f"{', '.join(pending) if pending else 'none'}."])


def section_export_passes(results: Path) -> str:
    """Latency of each network as exported plain and with the runtime's graph passes (bench_export_passes)."""
    r = _load(results, "bench_export_passes")
    title = "## Export graph passes (batch 1, 1 thread, 64 px; medians of interleaved rounds, one run)"
    if not r:
        return title + "\n\n" + _missing("bench_export_passes", "python -m benchmarks.bench_export_passes")
    rows = []
    for name, net in r.get("networks", {}).items():
        forms = net.get("forms", {})
        plain = forms.get("plain", {}).get("latency_ms", {})
        default = r.get("defaults", {}).get("onnxruntime") or []
        passed = forms.get(default[0], {}) if default else {}
        best = passed.get("latency_ms", {}) if passed else plain
        row = [name, forms.get("plain", {}).get("prelu_nodes")]
        for runtime in ("onnxruntime", "tflite"):
            a, b = plain.get(runtime, {}).get("median_ms"), best.get(runtime, {}).get("median_ms")
            row += [a, b, (a / b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None]
        row.append(max(passed.get("max_abs_diff_vs_plain", {}).values(), default=None) if passed else 0.0)
        rows.append(row)
    return "\n\n".join([title, f"Default passes: {r.get('defaults')}; outputs compared with the plain export.",
                         _table(["network", "PReLU nodes", "ORT plain ms", "ORT passes ms", "ORT speed-up",
                                 "TFLite plain ms", "TFLite passes ms", "TFLite speed-up", "max abs diff"], rows)])


def section_hardening(results: Path) -> str:
    """Counts of the data-file fuzz run and the CLI / recipe / NNI bad-input cases."""
    title = "## Bad input (fuzzed files, CLI cases)"
    rows = []
    for name, how in (("fuzz_data", "python -m benchmarks.fuzz_data --cases 320 --seed 0 --save"),
                      ("hardening_cli", "python -m benchmarks.hardening_cli")):
        r = _load(results, name)
        if not r:
            rows.append([name, _missing(name, how), None, None, None, None, None])
            continue
        rows.append([name, r.get("tried"), r.get("clean"), r.get("traceback"), r.get("hang"), r.get("oom", "–"),
                     r.get("accepted")])
    return "\n\n".join([title, _table(["record", "tried", "clean (one line / identical)", "traceback", "hang", "OOM",
                                        "wrong data accepted"], rows)])


def section_scale(results: Path) -> str:
    """nnictl vs run-local per test experiment (before / after the overhead work), MS1M-shape data, PartialFC."""
    parts = ["## NNI per-trial overhead and MS1M scale"]
    r = _load(results, "bench_nni_overhead")
    if not r:
        parts.append(_missing("bench_nni_overhead", "python -m benchmarks.bench_nni_overhead"))
    else:
        runs = r.get("runs", {})
        before, after = runs.get("before", {}).get("files", {}), runs.get("after", {}).get("files", {})
        rows = []
        for f in sorted(set(before) | set(after)):
            b, a = before.get(f, {}), after.get(f, {})
            rows.append([f, *(_f(v, 2) for v in (b.get("run_local_s"), b.get("nnictl_s"), b.get("ratio"), a.get("run_local_s"),
                                                  a.get("nnictl_s"), a.get("ratio"), a.get("startup_s"), a.get("trials_span_s"),
                                                  a.get("tail_s"), a.get("stop_s"))), _f(a.get("within_2x"))])
        parts.append(f"Goal: {r.get('goal')}. nnictl s: from `nnictl create` to the experiment seen DONE "
                     "(registration and `nnictl stop` apart); each row's two sides ran back to back on a shared "
                     "2-core machine (a background training holds one core); `before` and `after` ran at different "
                     "times and loads except where the runs' notes say (ofa_test, toy_test back to back).")
        parts.append(_table(["experiment file", "run-local s before", "nnictl s before", "ratio before", "run-local s after",
                             "nnictl s after", "ratio after", "start-up s (to 1st trial)", "trials span s",
                             "tail s (to DONE)", "nnictl stop s", "within 2x"], rows))
        floor = (runs.get("after") or {}).get("cold_process_import_s") or {}
        if floor:
            parts.append("NNI's own start-up before the first trial (cold processes, each `import nni`): "
                         + ", ".join(f"{k} {_f(floor.get(k), 2)} s" for k in
                                     ("nnictl_process", "dispatcher_imports", "nni_collect_version_info") if k in floor)
                         + " (nnictl create, the dispatcher, the local training service's version probe: in series).")
    m = _load(results, "bench_ms1m_scale")
    if not m:
        parts.append(_missing("bench_ms1m_scale", "python -m benchmarks.bench_ms1m_scale"))
    else:
        idx = m.get("index", {}).get("numpy", {})
        shape = m.get("shape", {})
        rows = [[f"`.idx` + layout load, {shape.get('images')} images / {shape.get('identities')} identities",
                 f"{_f(idx.get('seconds'), 2)} s, +{_f(idx.get('peak_added_mb'), 0)} MB peak",
                 f"meets goal (<= 10 s, <= 1 GB): {_f(m.get('index', {}).get('meets_goal'))}"]]
        for key, t in m.get("throughput", {}).items():
            if key == "workers_for_2000_img_s":
                rows.append(["loader workers to feed 2,000 img/s (112 px)",
                             f"{t.get('workers_with_a_free_core_each')} with a free core each, "
                             f"{t.get('workers_at_wall_rate')} at this shared machine's wall rate", t.get("from")])
                continue
            rows.append([f"read + decode: {key}", f"{_f(t.get('img_per_s'), 0)} img/s wall",
                         f"{_f(t.get('img_per_cpu_s') or t.get('img_per_worker_cpu_s'), 0)} img per CPU-second"])
        for pfc in m.get("partial_fc") or []:
            rows.append([f"PartialFC {pfc.get('num_classes')} classes, sample_rate {pfc.get('sample_rate')}, "
                         f"batch {pfc.get('batch_size')}, {pfc.get('threads')} threads",
                         f"{_f(pfc.get('step_s_median'), 2)} s/step", f"+{_f(pfc.get('peak_added_mb'), 0)} MB peak"])
        parts.append(_table(["MS1MV3-shape synthetic set", "measured", "note"], rows))
    return "\n\n".join(parts)


def render(results: Path) -> dict[str, Any]:
    """Write ``summary.md`` and (when there are points) ``summary.png`` into ``results``."""
    from facenas.utils.plot import pareto_front, plot_accuracy_latency

    report, rows = section_report(results)
    sections: list[Callable[[Path], str]] = [section_data, section_lut]
    parts = ["# facenas benchmark summary", "Regenerate with `python -m benchmarks.summary`; every number comes from "
             "the JSON in this folder (machine, versions and command line are recorded there)."]
    parts += [s(results) for s in sections]
    parts.append(report)
    parts += [section_li_arcface(results), section_enas(results), section_ofa(results), section_deploy(results, rows),
              section_reference_front(results), section_export_passes(results), section_hardening(results),
              section_scale(results)]
    points = [r for r in rows if isinstance(r.get("latency_ms"), (int, float)) and isinstance(r.get("lfw_acc"), (int, float))]
    out: dict[str, Any] = {"summary_md": str(results / "summary.md"), "points": len(points)}
    if points:
        png = plot_accuracy_latency([str(p["network"])[:16] for p in points],
                                    [p["latency_ms"] for p in points], [p["lfw_acc"] for p in points],
                                    results / "summary.png", title="CPU scale: LFW accuracy vs latency",
                                    ylabel="LFW accuracy (lfw.bin)", groups=[p["method"] for p in points])
        front = pareto_front([(p["latency_ms"], p["lfw_acc"]) for p in points])
        out["summary_png"] = str(png)
        out["pareto"] = [f"{points[i]['method']}: {points[i]['network']}" for i in front]
        parts.append("## Accuracy vs latency\n\n![accuracy vs latency](summary.png)\n\nPareto front: " +
                     "; ".join(out["pareto"]))
    else:
        parts.append("## Accuracy vs latency\n\n_missing: no network has both a recorded LFW accuracy and a measured "
                     "latency (bench_deploy)._")
    (results / "summary.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    out = render(Path(args.results))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
