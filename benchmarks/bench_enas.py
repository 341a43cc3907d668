"""ENAS at CPU scale: the top-3 vs random arcs of matching latency, read from the record of
``recipes/nni/enas_cpu.yml`` (nothing is run here).

Every step behind the comparison -- the ENAS space's latency table, the search, the random arcs
within +-10 % of each top arc's predicted latency, the six retrainings with the protocol and their
side-by-side timing in onnxruntime and TFLite -- is a step of the experiment file, so the numbers
are the pipeline's::

    facenas nni run-local recipes/nni/enas_cpu.yml --output runs/enas_cpu            # resumable
    python -m benchmarks.collect_pipeline runs/enas_cpu --name enas_cpu --experiment recipes/nni/enas_cpu.yml
    python -m benchmarks.bench_enas [--results benchmarks/results]                   # the summary, as JSON

:func:`summarise` reads a collected record (``benchmarks/results/enas_cpu.json``; any pipeline of the
same stages, e.g. ``enas_test.yml``'s) by stage and role, not by step name: the ``runtime.lut`` trial
gives the table, ``enas.search`` the search, ``enas.retrain`` trials with role ``candidate`` the
searched (top) arcs and with role ``reference`` the random ones -- each random arc's
``params.search`` is its ``enas.random_arcs`` entry (``matches``: the top arc it stands against,
its predicted and target latency, the draws) -- and ``runtime.latency`` the measured times (the
step that timed the networks in the same rounds where it ran). :func:`report_rows` gives rows
for the accuracy report of ``benchmarks/summary.py``.

The earlier study (``benchmarks/results/bench_enas.json``: tight vs loose latency targets, 2-epoch
retrains) was produced by this script's own workflow before that moved into the experiment file;
the record stays as it was. :func:`_predictor` / :func:`_targets` still read that study's latency
table for ``benchmarks/bench_enas_latency_controller.py``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._records import RESULTS, ok_trials as _ok, read_record, reader_main
from benchmarks.seed_rows import _trial_seed, enas_match
from benchmarks.seed_stats import seed_stats, verdict


RECORD = "enas_cpu"
RUNTIMES = ("onnxruntime", "tflite")
#: the ENAS space of the CPU-scale study (the ``enas`` space's defaults: 64x64, 128-d)
SPACE_CONFIG: dict[str, Any] = {"input_size": 64, "embedding_size": 128}
#: the earlier study's tight / loose targets: percentiles of random arcs' predicted latency
PERCENTILES = {"tight": 20, "loose": 95}


def load_record(results: Path = RESULTS, name: str = RECORD) -> dict[str, Any] | None:
    """The collected record ``results/<name>.json`` (its ``result``), or None when it is not there."""
    return read_record(results, name)


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _measured(record: dict[str, Any], output: str | None) -> dict[str, float]:
    """The measured batch-1 latency (ms per runtime) of the network trained in ``output``: from the
    ``runtime.latency`` step that timed several networks in the same rounds where there is one."""
    if not output:
        return {}
    prefix = str(output).rstrip("/") + "/"
    found: list[tuple[bool, dict[str, float]]] = []
    for t in _ok(record, "runtime.latency"):
        p, m = t.get("params") or {}, t.get("metrics") or {}
        for name, path in (p.get("models") or {}).items():
            if str(path).startswith(prefix) and isinstance((m.get("latency_ms") or {}).get(name), dict):
                found.append((True, dict(m["latency_ms"][name])))
        if str(p.get("model", "")).startswith(prefix):
            found.append((False, {rt: m[f"latency_{rt}_ms"] for rt in RUNTIMES if f"latency_{rt}_ms" in m}))
    found.sort(key=lambda f: not f[0])
    return found[0][1] if found else {}


def _network(record: dict[str, Any], trial: dict[str, Any]) -> dict[str, Any]:
    m, p = trial.get("metrics") or {}, trial.get("params") or {}
    search = p.get("search") if isinstance(p.get("search"), dict) else {}
    return {"step": trial.get("step"), "index": trial.get("index"), "role": trial.get("role"),
            "sample": (trial.get("arch") or {}).get("sample"),
            **{k: m.get(k) for k in ("lfw_acc", "lfw_acc_std", "lfw_tar_at_far_1e-3", "mflops", "params_m",
                                      "epochs", "train_seconds")},
            "predicted_ms": m.get("latency_ms"), "measured_ms": _measured(record, m.get("output")),
            "threads": p.get("threads"), "seed": _trial_seed(trial, record),
            "top": int(top) if (top := enas_match(trial, ())) is not None else None,  # the top arc it is or matches
            # a top arc: its rank and shared-weight validation accuracy in the search; a random arc: which top
            # arc it matches, the target latency and the draws it took (its enas.random_arcs entry)
            "search": {k: search.get(k) for k in ("rank", "val_acc", "matches", "target_latency_ms",
                                                    "relative_difference", "draws") if k in search}}


def _versus(a: list[float], b: list[float]) -> dict[str, Any]:
    """Top vs random accuracies (one value per network: its run, or its mean over the seeds every arc has): mean and
    std of each group, the difference, Welch's p and issue 16's verdict (:func:`benchmarks.seed_stats.verdict`,
    accuracy only; the groups are networks)."""
    v = verdict(a, b, None, None)
    return {"n": [v.searched.n, v.reference.n], "mean": [v.searched.mean, v.reference.mean],
            "std": [v.searched.std, v.reference.std], "difference": v.gain, "p_value": v.p,
            "verdict": v.label if a and b else None, "reason": v.reason}


def summarise(record: dict[str, Any]) -> dict[str, Any]:
    """The table, the search, the top and random networks paired (accuracy, predicted and measured latency),
    and the top-vs-random comparison of LFW accuracy (Welch's t over the networks of each group, the verdict rule of
    :mod:`benchmarks.seed_stats`)."""
    lut = next(iter(_ok(record, "runtime.lut")), None)
    table = None
    if lut is not None:
        m = lut.get("metrics") or {}
        table = {k: m.get(k) for k in ("runtime", "threads", "entries", "fit_mape", "spearman", "mape", "within_10pct",
                                       "device", "table")}
    search = next(iter(_ok(record, "enas.search")), None)
    search_out = None
    if search is not None:
        m, p = search.get("metrics") or {}, search.get("params") or {}
        cfg = {**(p["config"] if isinstance(p.get("config"), dict) else {}), **{k: v for k, v in p.items() if k != "config"}}
        search_out = {**{k: m.get(k) for k in ("latency_ms", "mflops", "params_m", "epochs", "search_seconds")},
                      "settings": {k: cfg.get(k) for k in ("epochs", "steps_per_epoch", "controller_steps", "arcs_per_step",
                                                            "candidates", "top_k", "reward", "controller") if k in cfg}}
        curve = [c for c in search.get("curve") or [] if _num(c.get("latency_ms"))]
        if curve:  # the controller's sampled arcs per epoch: did the latency term steer them?
            search_out["sampled"] = {"epochs": [c.get("epoch") for c in curve], "latency_ms": [c["latency_ms"] for c in curve],
                                     "entropy": [curve[0].get("entropy"), curve[-1].get("entropy")]}
    # in the record's order (the experiment file's): each arc's runs list its seeds as the file ran them
    ok = {id(t) for t in _ok(record, "enas.retrain")}
    retrains = [_network(record, t) for t in record.get("trials", []) if id(t) in ok]
    # one network per arc in the table and the pairs: its run at the first seed every arc of both groups was
    # retrained with (the retrain steps' seed: the runs timed side by side); the top-vs-random comparison takes
    # each arc's mean over all those common seeds (one seed each until every arc has more: enas_cpu.yml's
    # top1_seeds ... random23_seeds)
    by_arc: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for n in retrains:
        by_arc.setdefault((n["role"], n["top"]), []).append(n)
    common = [x for x in dict.fromkeys(n["seed"] for n in retrains)
              if all(x in {n["seed"] for n in runs} for runs in by_arc.values())]
    first = lambda runs: next((n for n in runs if n["seed"] in common[:1]), runs[0])  # noqa: E731
    random = sorted((first(r) for (role, _), r in by_arc.items() if role == "reference"), key=lambda n: n["top"] or 0)
    top = sorted((first(r) for (role, _), r in by_arc.items() if role == "candidate"), key=lambda n: n["top"] or 0)

    def over_seeds(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for t in group:
            runs = by_arc[(t["role"], t["top"])]
            if len(runs) > 1:
                v = seed_stats([n["lfw_acc"] for n in runs if _num(n.get("lfw_acc"))])
                out.append({"rank": t["top"], "seeds": [n["seed"] for n in runs],
                            "lfw_acc": [n.get("lfw_acc") for n in runs], "mean": v.mean, "std": v.std})
        return out

    def arc_accs(group: list[dict[str, Any]]) -> list[float]:
        """Each arc's LFW accuracy: its mean over the common seeds (its one run when there is one common seed)."""
        out = []
        for t in group:
            accs = [n["lfw_acc"] for n in by_arc[(t["role"], t["top"])] if n["seed"] in common and _num(n.get("lfw_acc"))]
            if accs:
                out.append(float(np.mean(accs)))
        return out

    top_seeds, random_seeds = over_seeds(top), over_seeds(random)
    pairs = []
    for t in top:
        r = next((x for x in random if x["top"] == t["top"]), None)
        pair: dict[str, Any] = {"top": t["top"], "top_lfw_acc": t.get("lfw_acc"), "random_lfw_acc": (r or {}).get("lfw_acc"),
                                "top_predicted_ms": t.get("predicted_ms"), "random_predicted_ms": (r or {}).get("predicted_ms"),
                                "random_draws": (r or {}).get("search", {}).get("draws")}
        if r and _num(t.get("lfw_acc")) and _num(r.get("lfw_acc")):
            pair["lfw_acc_difference"] = t["lfw_acc"] - r["lfw_acc"]
        for rt in RUNTIMES:
            a, b = t["measured_ms"].get(rt), (r or {}).get("measured_ms", {}).get(rt)
            pair[f"{rt}_ms"] = [a, b]
            if _num(a) and _num(b) and b:
                pair[f"{rt}_ratio"] = a / b
        pairs.append(pair)
    epochs = sorted({n["epochs"] for n in retrains if _num(n.get("epochs"))})  # the epochs each retrain ran
    return {"pipeline": record.get("pipeline"), "experiment_file": record.get("experiment_file"),
            "date": record.get("_date"), "table": table, "search": search_out, "top": top, "random": random,
            "pairs": pairs, "lfw_acc_top_vs_random": {**_versus(arc_accs(top), arc_accs(random)), "seeds": common},
            "top_seeds": top_seeds,
            "random_seeds": random_seeds,
            "retrain_epochs": epochs, "pending_steps": record.get("pending_steps", [])}


def report_rows(results: Path = RESULTS) -> list[dict[str, Any]]:
    """Rows of the CPU-scale accuracy report (``benchmarks/summary.py``) from the enas_cpu record."""
    record = load_record(results)
    if not record:
        return []
    s = summarise(record)
    search_min = round(s["search"]["search_seconds"] / 60, 1) if _num((s.get("search") or {}).get("search_seconds")) else None
    rows = []
    for group, method in (("top", "ENAS-style (retrained)"), ("random", "random arc of matching latency")):
        for i, n in enumerate(s[group], 1):
            lat = n.get("measured_ms") or {}
            rows.append({"method": method, "network": f"enas {group}{i}",
                         **{k: n.get(k) for k in ("lfw_acc", "lfw_acc_std", "mflops", "params_m")},
                         "tar": n.get("lfw_tar_at_far_1e-3"), "latency_ms": lat.get("onnxruntime"),
                         "latency_lut_ms": n.get("predicted_ms"),
                         "time_min": round(n["train_seconds"] / 60, 1) if _num(n.get("train_seconds")) else None,
                         "search_min": search_min if group == "top" else None,
                         "budget": f"{n.get('epochs')} epochs (recipes/nni/enas_cpu.yml); TFLite {_ms(lat.get('tflite'))} ms"})
    return rows


def _ms(value: Any) -> str:
    return f"{value:.3f}" if _num(value) else "–"


# -- the earlier study's latency table (read by bench_enas_latency_controller) ------------------------------
def _lut_path(art: Path) -> Path:
    return art / "lut_enas_onnxruntime_t1.json"


def _predictor(art: Path):
    """The ENAS space and the LatencyModel prediction of the study's table in ``art``."""
    from facenas.adapters.runtime.latency_model import LatencyModel
    from facenas.nas.space import create_space

    path = _lut_path(art)
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: build it with `facenas lut build --space enas --runtime onnxruntime "
                         f"--threads 1 --out {path}` (or take the table of an enas_cpu.yml run: its lut step)")
    space = create_space("enas", **SPACE_CONFIG)
    return space, LatencyModel.load(path, space).predict


def _random_latencies(art: Path, n: int = 500, seed: int = 123) -> tuple[list[dict], np.ndarray]:
    space, predict = _predictor(art)
    rng = np.random.default_rng(seed)
    samples = [space.sample(rng) for _ in range(n)]
    return samples, np.array([predict(s) for s in samples])


def _targets(art: Path) -> dict[str, float]:
    """The tight / loose targets: percentiles of 500 random arcs' predicted latency."""
    _, lats = _random_latencies(art)
    return {k: float(np.percentile(lats, p)) for k, p in PERCENTILES.items()}


def main(argv=None) -> dict[str, Any]:
    return reader_main(argv, __doc__.splitlines()[0], RECORD, "recipes/nni/enas_cpu.yml", summarise)


if __name__ == "__main__":
    main()
