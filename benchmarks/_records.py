"""Reading a recorded experiment (``python -m benchmarks.collect_pipeline RUN --name NAME --experiment FILE``):
the part every reader of such a record shares (bench_ofa, bench_enas, bench_tnas_table3, bench_tnas_flops_target).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Sequence

RESULTS = Path(__file__).resolve().parent / "results"


def read_record(results: Path, name: str) -> dict[str, Any] | None:
    """The collected record ``results/<name>.json`` (its ``result``, plus ``_date`` and ``_command``), or None."""
    path = Path(results) / f"{name}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return {**data.get("result", {}), "_date": data.get("date"), "_command": data.get("command")}


def ok_trials(record: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    """The record's succeeded trials of ``stage``, in step / index order."""
    trials = [t for t in record.get("trials", []) if t.get("stage") == stage and t.get("status") == "SUCCEEDED"]
    return sorted(trials, key=lambda t: (str(t.get("step")), t.get("index") or 0))


def reader_main(argv: Sequence[str] | None, description: str, record: str, experiment: str,
                read: Callable[[dict[str, Any]], Any]) -> Any:
    """A reader's command line: ``[--results DIR] [--record NAME]``; prints ``read(record)`` as one JSON line.

    A record that has not been collected yet exits with the two commands that make it.
    """
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--results", default=str(RESULTS), help="folder holding the collected record")
    ap.add_argument("--record", default=record, help="record name: <results>/<record>.json (collect_pipeline --name)")
    args = ap.parse_args(argv)
    data = read_record(Path(args.results), args.record)
    if data is None:
        raise SystemExit(f"{Path(args.results) / (args.record + '.json')} has not been recorded: run `facenas nni "
                         f"run-local {experiment} --output OUT` and `python -m benchmarks.collect_pipeline OUT --name "
                         f"{args.record} --experiment {experiment}`")
    out = read(data)
    print(json.dumps(out))
    return out
