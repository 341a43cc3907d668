"""Does a TNAS search land on its FLOPs target, and does its architecture distribution converge? Read from the
record of ``recipes/nni/tnas_cpu.yml`` (nothing is run here).

    facenas nni run-local recipes/nni/tnas_cpu.yml --output runs/tnas_cpu          # resumable
    python -m benchmarks.collect_pipeline runs/tnas_cpu --name tnas_cpu --experiment recipes/nni/tnas_cpu.yml
    python -m benchmarks.bench_tnas_flops_target [--results benchmarks/results]   # per search, as JSON

Per ``tnas.search`` trial of the record (one per FLOPs target): the target R, the derived architecture's
FLOPs and whether it lies within (1 +- t) R, the argmax architecture's (the paper's derivation), the repair
moves, the derived widths and depths and whether they left uniform widths, and the per-epoch convergence the
search recorded (``per_epoch``: normalised architecture entropy, expected and argmax MFLOPs, whether the
epoch's argmax is already the final one) with ``stable_from``, the first epoch from which the argmax no
longer changed.
"""
from __future__ import annotations

import json
from typing import Any

from benchmarks._records import ok_trials, reader_main
from benchmarks.bench_tnas_table3 import RECORD

#: width-ratio labels of a TNAS sample (stem, stages, inner convs)
_WIDTH = "width_ratio"


def _widths(sample: dict[str, Any] | None) -> list[float]:
    return [float(v) for k, v in (sample or {}).items() if k.endswith(_WIDTH) and isinstance(v, (int, float))]


def search_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per successful ``tnas.search`` trial, in step/index order."""
    rows = []
    for t in ok_trials(record, "tnas.search"):
        p, m = t.get("params") or {}, t.get("metrics") or {}
        config = p.get("config") if isinstance(p.get("config"), dict) else {}
        ratio = p.get("target_width_ratio", config.get("target_width_ratio"))
        sample = (t.get("arch") or {}).get("sample")
        per_epoch = [dict(e) for e in m.get("per_epoch") or []]
        stable_from = None
        for e in reversed(per_epoch):
            if not e.get("argmax_final"):
                break
            stable_from = e.get("epoch")
        widths = _widths(sample)
        rows.append({
            "step": t.get("step"), "index": t.get("index"), "ratio": ratio, "target_mflops": m.get("target_mflops"),
            "mflops": m.get("mflops"), "within_tolerance": m.get("within_tolerance"),
            "argmax_mflops": m.get("argmax_mflops"), "argmax_within_tolerance": m.get("argmax_within_tolerance"),
            "repair_moves": m.get("repair_moves"), "epochs": m.get("epochs"), "train_seconds": m.get("train_seconds"),
            "arch_entropy": m.get("arch_entropy"), "sample": sample,
            "sample_key": json.dumps(sample, sort_keys=True) if sample is not None else None,
            "width_ratios": sorted(set(widths)), "uniform_widths": len(set(widths)) <= 1 if widths else None,
            "depths": [v for k, v in sorted((sample or {}).items()) if k.endswith("/depth")],
            "per_epoch": per_epoch, "stable_from": stable_from,
        })
    return rows


def main(argv=None) -> list[dict[str, Any]]:
    return reader_main(argv, __doc__.splitlines()[0], RECORD, "recipes/nni/tnas_cpu.yml", search_rows)


if __name__ == "__main__":
    main()
