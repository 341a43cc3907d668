"""TNAS Table 3 at CPU scale, read from the record of ``recipes/nni/tnas_cpu.yml`` (nothing is run here):
TNAS-searched students vs uniformly narrowed students of the same FLOPs, both distilled (FKD) from the same
teacher with the protocol (20 epochs), per FLOPs target, over seeds.

Every step -- the teacher, a search per FLOPs target, the searched and the uniform students of each target
over three seeds, the timing of every student in onnxruntime and TFLite -- is a step of the experiment file,
so the numbers are the pipeline's::

    facenas nni run-local recipes/nni/tnas_cpu.yml --output runs/tnas_cpu          # resumable
    python -m benchmarks.collect_pipeline runs/tnas_cpu --name tnas_cpu --experiment recipes/nni/tnas_cpu.yml
    python -m benchmarks.bench_tnas_table3 [--results benchmarks/results]         # the comparison, as JSON

:func:`summarise` reads a collected record (``benchmarks/results/tnas_cpu.json``; any pipeline of the same
stages, e.g. ``tnas_test.yml``'s) by stage and role, not by step name: ``engine.train`` with role
``reference`` is the teacher, ``tnas.search`` trials the searches (their target: ``target_width_ratio``),
``tnas.train`` trials the students -- a ``candidate`` is a searched student (its search: the one whose
architecture it trained), a ``reference`` with ``uniform_ratio`` a uniform one (a ``reference`` without a
teacher, ``distill_weight`` 0, is listed apart as the no-teacher student) -- and ``runtime.latency`` trials
the times of the network they loaded (found as :mod:`benchmarks.seed_rows` finds them; a side's latency over
its seeds is seed_rows' one definition, the median, as in the headline). Per target: LFW accuracy (``acc``:
``lfw_acc``; a test-scale run's ``val_acc``) mean +- std over seeds (sample std) of each side, the difference, Welch's t-test p-value and issue 16's verdict -- :mod:`benchmarks.seed_stats`, the one
statistics code path of the headline: "better" only with >= +1 point and p < 0.05, "worse" when p < 0.05
and lower, else "tie"; fewer than 3 seeds a side: "n<3: not a headline". The searches' convergence: :mod:`benchmarks.bench_tnas_flops_target`.

The earlier short-budget record (``bench_tnas_table3.json``: a 2-epoch search, 4-epoch students, one seed,
written by this module's former workflow) stays as it was; :func:`load_short_budget` reads it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks._records import RESULTS, ok_trials as _ok, read_record, reader_main
from benchmarks.seed_rows import latency_over_seeds, trial_latency
from benchmarks.seed_stats import seed_stats, verdict


RECORD = "tnas_cpu"
RUNTIMES = ("onnxruntime", "tflite")


def load_record(results: Path = RESULTS, name: str = RECORD) -> dict[str, Any] | None:
    """The collected record ``results/<name>.json`` (its ``result``), or None when it is not there."""
    return read_record(results, name)


def load_short_budget(results: Path = RESULTS) -> dict[str, Any] | None:
    """The earlier short-budget record ``bench_tnas_table3.json`` with its budget in words, or None."""
    path = Path(results) / "bench_tnas_table3.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    r = data.get("result", {})
    steps = r.get("steps") or {}
    search_epochs = (steps.get("search") or {}).get("epochs")
    student_epochs = (steps.get("tnas_fkd") or {}).get("epochs")
    return {"date": data.get("date"), "command": data.get("command"), "table": r.get("table") or [],
            "budget": f"{_num(search_epochs)}-epoch search, {_num(student_epochs)}-epoch students, one seed "
                      "(± over LFW's 10 folds, not over seeds)"}


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else "?"


def _sample(trial: dict[str, Any]) -> str | None:
    sample = (trial.get("arch") or {}).get("sample") or (trial.get("params") or {}).get("sample")
    return json.dumps(sample, sort_keys=True) if sample is not None else None


def accuracy_key(record: dict[str, Any]) -> str:
    """``lfw_acc`` (the protocol's test set) when a student has it, else ``val_acc`` (a test-scale run's val.bin)."""
    students = [t.get("metrics") or {} for t in _ok(record, "tnas.train")]
    return "lfw_acc" if any("lfw_acc" in m for m in students) or not any("val_acc" in m for m in students) else "val_acc"


def _stats(rows: list[dict[str, Any]], key: str = "acc") -> dict[str, Any]:
    """Mean and sample std over seeds (:func:`benchmarks.seed_stats.seed_stats`) of ``key``."""
    st = seed_stats([r[key] for r in rows if isinstance(r.get(key), (int, float))])
    return {"n": st.n, "mean": st.mean, "std": st.std, "values": list(st.values)}


def _latency(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The side's latency over its seeds: seed_rows' one definition (the median), the headline's."""
    return {rt: ms for rt, ms in latency_over_seeds([r.get("latency_ms") or {} for r in rows]).items() if ms is not None}


def _student(record: dict[str, Any], t: dict[str, Any], acc: str) -> dict[str, Any]:
    p, m = t.get("params") or {}, t.get("metrics") or {}
    config = p.get("config") if isinstance(p.get("config"), dict) else {}
    seed = p.get("seed", config.get("seed"))
    return {"step": t.get("step"), "index": t.get("index"), "seed": seed, "acc": m.get(acc),
            "acc_std": m.get(f"{acc}_std"), "lfw_tar_at_far_1e-3": m.get("lfw_tar_at_far_1e-3"),
            "mflops": m.get("mflops"), "params_m": m.get("params_m"), "epochs": m.get("epochs"),
            "train_seconds": m.get("train_seconds"), "output": m.get("output"),
            "latency_ms": {rt: ms for rt, ms in trial_latency(t, _done(record)).items() if ms is not None}}


def _done(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in record.get("trials", []) if t.get("status") == "SUCCEEDED"]


def _target_key(ratio: Any, mflops: Any) -> str:
    return f"ratio {ratio:g}" if isinstance(ratio, (int, float)) else f"{mflops:.2f} MFLOPs"


def summarise(record: dict[str, Any]) -> dict[str, Any]:
    """Per FLOPs target: the search, the searched and the uniform students over seeds, and the comparison."""
    from benchmarks.bench_tnas_flops_target import search_rows

    acc = accuracy_key(record)
    teachers = [t for t in _ok(record, "engine.train") if t.get("role") == "reference"]
    teacher = None
    if teachers:
        m = teachers[0].get("metrics") or {}
        teacher = {"step": teachers[0].get("step"), "acc": m.get(acc), "acc_std": m.get(f"{acc}_std"),
                   **{k: m.get(k) for k in ("mflops", "params_m", "epochs", "train_seconds")}}
    targets: dict[str, dict[str, Any]] = {}
    by_sample: dict[str | None, str] = {}
    for s in search_rows(record):
        key = _target_key(s.get("ratio"), s.get("target_mflops"))
        targets[key] = {"ratio": s.get("ratio"), "target_mflops": s.get("target_mflops"), "search": s,
                        "searched": [], "uniform": []}
        by_sample[s.get("sample_key")] = key
    no_teacher = []
    for t in _ok(record, "tnas.train"):
        p = t.get("params") or {}
        row = _student(record, t, acc)
        if t.get("role") == "candidate":
            key = by_sample.get(_sample(t))
            if key is None:
                continue  # a student of no recorded search
            targets[key]["searched"].append(row)
            continue
        if ((p.get("distill") or {}).get("distill_weight", 1.0) or 0) <= 0:
            no_teacher.append(row)
            continue
        ratio = p.get("uniform_ratio")
        key = _target_key(ratio, row.get("mflops") or 0.0)
        entry = targets.setdefault(key, {"ratio": ratio, "target_mflops": row.get("mflops"), "search": None,
                                         "searched": [], "uniform": []})
        entry["uniform"].append(row)
    for entry in targets.values():
        for side in ("searched", "uniform"):
            entry[side].sort(key=lambda r: (str(r.get("seed")), r.get("index") or 0))
        entry["comparison"] = compare(entry["searched"], entry["uniform"])
    return {"pipeline": record.get("pipeline"), "experiment_file": record.get("experiment_file"),
            "date": record.get("_date"), "accuracy": acc, "teacher": teacher, "targets": targets, "no_teacher": no_teacher,
            "pending_steps": record.get("pending_steps", [])}


def compare(searched: list[dict[str, Any]], uniform: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy (``acc``) of the searched vs the uniform students over seeds: means, stds, difference, Welch's p and
    issue 16's verdict (:func:`benchmarks.seed_stats.verdict`; accuracy only: the two sides have the same FLOPs)."""
    a, b = _stats(searched), _stats(uniform)
    v = verdict(a["values"], b["values"], None, None)
    return {"searched": a, "uniform": b, "difference": v.gain, "welch_p": v.p,
            "verdict": v.label if a["n"] and b["n"] else None, "reason": v.reason,
            "seeds": sorted({str(r.get("seed")) for r in searched + uniform}),
            "epochs": sorted({r.get("epochs") for r in searched + uniform if r.get("epochs") is not None}),
            "latency_ms": {"searched": _latency(searched), "uniform": _latency(uniform)},
            "mflops": {"searched": _stats(searched, "mflops")["mean"], "uniform": _stats(uniform, "mflops")["mean"]}}


def main(argv=None) -> dict[str, Any]:
    return reader_main(argv, __doc__.splitlines()[0], RECORD, "recipes/nni/tnas_cpu.yml", summarise)


if __name__ == "__main__":
    main()
