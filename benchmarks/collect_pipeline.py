"""Record what a pipeline run left in its output folder as ``benchmarks/results/<name>.json``.

    python -m benchmarks.collect_pipeline OUTPUT_DIR --name reference_front \
        --experiment recipes/nni/reference_front_cpu.yml

Reads only the run's own records (``advisor_state.json`` and each trial's ``result.json``, as
written by ``facenas nni run-local`` or an NNI experiment) and keeps, per trial, its step, stage,
role, status, parameters and final metrics; steps not run yet are listed as pending. Nothing is
re-measured: the numbers are the experiment file's. Machine and versions are this machine's (the
run's own machine is in each trial's ``process.host``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks._common import save_result

#: per-trial metrics kept in the record (everything else stays in the run's folder)
KEPT = ("lfw_acc", "lfw_acc_std", "lfw_tar_at_far_1e-3", "lfw_auc", "lfw_devtest_auc", "loss", "epochs",
        "global_step", "train_seconds", "mflops", "params_m", "latency_ms", "latency_onnxruntime_ms",
        "latency_tflite_ms", "input_size", "threads", "passes",
        # latency tables (runtime.lut) and searches (ofa.search): what the OFA rows are read from
        "runtime", "entries", "fit_mape", "p35_ms", "p75_ms", "spearman", "mape", "within_10pct", "raw_spearman",
        "raw_mape", "best_cost", "bound", "ranker", "search_seconds", "fit_seconds", "candidates", "device",
        "supernet_mflops", "largest_lfw_devtest_acc", "smallest_lfw_devtest_acc", "phases_done", "table", "output",
        # TNAS searches (tnas.search): the target, where the derived architecture landed, the per-epoch convergence
        "target_mflops", "argmax_mflops", "within_tolerance", "argmax_within_tolerance", "arch_entropy",
        "expected_mflops", "per_epoch", "repair_moves",
        # the verification accuracy of test-scale runs (their val.bin), read where lfw.bin's is absent
        "val_acc", "val_acc_std")


def _params(params: Any) -> Any:
    """A trial's parameters, with lists of earlier trials' records (``${evaluate[*]}``) kept as their count."""
    if not isinstance(params, dict):
        return params
    return {k: (f"{len(v)} trial records" if isinstance(v, list) and v and isinstance(v[0], dict) and "metrics" in v[0]
                else v) for k, v in params.items()}


def collect(output_dir: Path) -> dict[str, Any]:
    """Trials (finished or not) of the pipeline run in ``output_dir``, in step order."""
    state_file = output_dir / "advisor_state.json"
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
    trials = []
    for result in sorted(output_dir.glob("*/*/result.json")):
        record = json.loads(result.read_text(encoding="utf-8"))
        metrics = record.get("metrics") or {}
        trials.append({"step": record.get("step"), "index": record.get("index"), "stage": record.get("stage"),
                       "role": record.get("role"), "status": record.get("status"), "params": _params(record.get("params")),
                       "arch": record.get("arch") or (metrics["arch"] if isinstance(metrics.get("arch"), dict) else None),
                       "host": (record.get("process") or {}).get("host"),
                       "metrics": {k: metrics[k] for k in KEPT if k in metrics}})
    done = {t["step"] for t in trials if t["status"] == "SUCCEEDED"}
    steps = [s.get("name") for s in (state.get("config") or {}).get("steps", []) if isinstance(s, dict)]
    return {"pipeline": state.get("name"), "trials": trials,
            "pending_steps": [s for s in steps if s not in done]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output_dir", type=Path, help="the run's output folder (facenas nni run-local --output)")
    ap.add_argument("--name", required=True, help="record name: benchmarks/results/<name>.json")
    ap.add_argument("--experiment", required=True, help="the experiment file the run came from")
    args = ap.parse_args(argv)
    result = collect(args.output_dir)
    result["experiment_file"] = args.experiment
    save_result(args.name, result, places={str(args.output_dir.resolve()): "$RUN_DIR"})


if __name__ == "__main__":
    main()
