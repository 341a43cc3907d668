"""An experiment's outcome, read from its facenas output folder (``facenas nni results``).

Every facenas trial leaves ``result.json`` in its folder (:mod:`facenas.adapters.nni.trial`); the
facenas advisors also keep ``advisor_state.json``. From these files (no NNI server needed, so it
works for running, stopped and finished experiments alike) this module builds:

- ``summary.json`` -- steps, one row per trial (status, metrics, trial id, folder, checkpoint) and
  the best architectures;
- ``summary.md`` -- the same as a Markdown table;
- ``best_architectures.json`` -- architecture descriptions (``facenas.arch/1``, loadable with
  :func:`facenas.nas.space.build_from_description` / ``get_model``) ranked by ``default``,
  from the last *candidate* step (see the roles in :mod:`facenas.adapters.nni.pipeline`) that
  produced architectures, with their metrics and checkpoints.

The trial table shows a few named metrics: ``--columns`` chooses them, else
:func:`default_columns` picks the verification, latency and cost ones the trials report.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from facenas.utils.io import read_json, write_json

log = logging.getLogger(__name__)

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
BEST_ARCHS_JSON = "best_architectures.json"
STATE_FILE = "advisor_state.json"
#: result keys that name a checkpoint / output folder of a trial, in order of preference
CHECKPOINT_KEYS = ("checkpoint", "best_checkpoint", "output", "model")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


#: NNI's trial statuses that end a trial (``TrialJobStatus``), and facenas's LOST: the trial's
#: process is gone and neither it nor NNI recorded an end (killed with the machine, kill -9).
ENDED_STATUSES = ("SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED", "LOST")


def nni_trial_events(output_dir: str | os.PathLike) -> dict[str, str]:
    """trial id -> the last status NNI recorded for it, from the experiment's ``db/nni.sqlite``
    (``<experiment dir>/<id>/db``, beside the ``facenas`` output folder); empty if there is none."""
    import sqlite3

    root = Path(output_dir)
    for db in (root.parent / "db" / "nni.sqlite", root / "db" / "nni.sqlite"):
        if not db.is_file():
            continue
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                rows = con.execute("SELECT trialJobId, event FROM TrialJobEvent ORDER BY timestamp, rowid").fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            log.warning("cannot read NNI's trial events from %s: %s", db, exc)
            return {}
        events: dict[str, str] = {}
        for trial_id, event in rows:
            if trial_id and event in (*ENDED_STATUSES, "WAITING", "RUNNING", "UNKNOWN"):
                # NNI can log RUNNING after a trial's end (a late status poll): an end is final
                if events.get(trial_id) not in ENDED_STATUSES:
                    events[trial_id] = event
        return events
    return {}


def _advisor_statuses(state: Mapping[str, Any] | None) -> dict[str, str]:
    """trial folder -> the NNI status the facenas advisor was told at the trial's end."""
    out = {}
    for unit in (state or {}).get("units", []):
        if unit.get("nni_status") in ENDED_STATUSES and unit.get("out_dir"):
            out[str(Path(unit["out_dir"]))] = unit["nni_status"]
    return out


def _process_gone(record: Mapping[str, Any]) -> bool:
    """True when the record names the trial's process, on this host, and it no longer runs."""
    from facenas.utils.lock import is_stale

    proc = record.get("process")
    return isinstance(proc, Mapping) and is_stale(dict(proc), age_s=0.0)


def unfinished_status(record: Mapping[str, Any], folder: Path, nni_events: Mapping[str, str],
                      advisor: Mapping[str, str]) -> str:
    """The status of a trial that wrote no ``result.json``: NNI's end status (cancelled, early
    stopped, failed), else the advisor's, else LOST if its process is gone, else RUNNING."""
    trial_id = (record.get("nni") or {}).get("trial_id")
    for status in (nni_events.get(str(trial_id)) if trial_id else None, advisor.get(str(folder))):
        if status in ENDED_STATUSES:
            return status
    return "LOST" if _process_gone(record) else "RUNNING"


def trial_records(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every trial folder under ``output_dir``: its ``result.json``, or ``params.json`` with the
    status NNI / the advisor / the process table give it if the trial wrote no result."""
    root = Path(output_dir)
    records = []
    seen: set[Path] = set()
    events: dict[str, str] | None = None
    advisor: dict[str, str] | None = None
    for params_path in sorted(list(root.glob("*/params.json")) + list(root.glob("*/*/params.json"))):
        folder = params_path.parent
        if folder in seen:
            continue
        seen.add(folder)
        rec = _read(folder / "result.json") if (folder / "result.json").is_file() else None
        if rec is None:
            rec = _read(params_path) or {}
            if events is None:
                events = nni_trial_events(root)
                state = _read(root / STATE_FILE) if (root / STATE_FILE).is_file() else None
                advisor = _advisor_statuses(state)
            rec["status"] = unfinished_status(rec, folder, events, advisor or {})
        rec.setdefault("out_dir", str(folder))
        records.append(rec)
    return records


def checkpoint_of(record: Mapping[str, Any]) -> str | None:
    result = record.get("result") or {}
    for key in CHECKPOINT_KEYS:
        value = result.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _default(record: Mapping[str, Any]) -> float:
    value = (record.get("metrics") or {}).get("default")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else -math.inf


def _step_order(records: Iterable[Mapping[str, Any]], state: Mapping[str, Any] | None) -> list[str]:
    if state and state.get("steps"):
        return [s["name"] for s in state["steps"]]
    order: list[str] = []
    for rec in records:
        if rec.get("step") not in order:
            order.append(rec.get("step", "trials"))
    return order


def row_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """One summary-table row of a trial record."""
    nni = record.get("nni") or {}
    metrics = {k: v for k, v in (record.get("metrics") or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {
        "step": record.get("step", "trials"),
        "index": record.get("index", 0),
        "attempt": record.get("attempt", 0),
        "status": record.get("status"),
        "stage": record.get("stage"),
        "role": record.get("role") or "candidate",
        "trial_id": nni.get("trial_id"),
        "default": metrics.get("default"),
        "metrics": metrics,
        "duration_s": record.get("duration_s"),
        "out_dir": record.get("out_dir"),
        "checkpoint": checkpoint_of(record),
        "error": record.get("error"),
    }


def best_architectures(records: list[Mapping[str, Any]], order: list[str], top_k: int | None = None) -> dict[str, Any]:
    """Architectures of successful trials ranked by ``default``: per step, and for the last candidate step.

    The ranking comes from the last step whose role is ``candidate`` (records without a role count
    as candidates); reference networks (a teacher, a uniform baseline) and auxiliary steps (a
    search's derived architecture) stay in ``by_step`` only.
    """
    by_step: dict[str, list[dict[str, Any]]] = {}
    candidate_steps: set[str] = set()
    for rec in records:
        if rec.get("status") != "SUCCEEDED" or not isinstance(rec.get("arch"), Mapping):
            continue
        if (rec.get("role") or "candidate") == "candidate":
            candidate_steps.add(rec.get("step", "trials"))
        entry = {
            "step": rec.get("step", "trials"), "role": rec.get("role") or "candidate", "index": rec.get("index", 0),
            "trial_id": (rec.get("nni") or {}).get("trial_id"), "default": _default(rec),
            "metrics": rec.get("metrics"), "arch": rec["arch"], "out_dir": rec.get("out_dir"),
            "checkpoint": checkpoint_of(rec),
        }
        by_step.setdefault(entry["step"], []).append(entry)
    for entries in by_step.values():
        entries.sort(key=lambda e: e["default"], reverse=True)
        for rank, entry in enumerate(entries, 1):
            entry["rank"] = rank
    final_step = None
    for name in order:
        if name in candidate_steps:
            final_step = name
    for name in by_step:  # steps not in the recorded order (other tuners)
        if final_step is None and name in candidate_steps:
            final_step = name
    ranking = by_step.get(final_step, []) if final_step else []
    return {"step": final_step, "ranking": ranking[:top_k] if top_k else ranking, "by_step": by_step}


def summarize(output_dir: str | os.PathLike, experiment_id: str | None = None) -> dict[str, Any]:
    """The outcome of an experiment, from its output folder (see the module docstring)."""
    root = Path(output_dir)
    state = _read(root / STATE_FILE) if (root / STATE_FILE).is_file() else None
    records = trial_records(root)
    order = _step_order(records, state)
    rows = sorted((row_of(r) for r in records), key=lambda r: (order.index(r["step"]) if r["step"] in order else len(order),
                                                                r["index"], r["attempt"]))
    steps = []
    for name in order:
        mine = [r for r in rows if r["step"] == name]
        ok = [r for r in mine if r["status"] == "SUCCEEDED"]
        step_state = next((s for s in (state or {}).get("steps", []) if s["name"] == name), {})
        steps.append({
            "name": name, "stage": step_state.get("stage") or (mine[0]["stage"] if mine else None),
            "status": step_state.get("status", "done" if mine and all(r["status"] in ENDED_STATUSES for r in mine)
                                     else "running"),
            "trials": len(mine), "succeeded": len(ok), "failed": sum(r["status"] == "FAILED" for r in mine),
            "stopped": sum(r["status"] in ENDED_STATUSES and r["status"] not in ("SUCCEEDED", "FAILED") for r in mine),
            "best_default": max((r["default"] for r in ok if r["default"] is not None), default=None),
            "note": step_state.get("note"),
        })
    archs = best_architectures(records, order)
    return {
        "experiment_id": experiment_id or (state or {}).get("experiment_id"),
        "output_dir": str(root),
        "status": (state or {}).get("status", "unknown (no facenas advisor state)"),
        "steps": steps,
        "trials": rows,
        "best_architectures": archs["ranking"],
        "best_architectures_step": archs["step"],
    }


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


#: what the default trial table shows, in this order: verification, deployment, cost
DEFAULT_COLUMN_PATTERNS = (r"latency_ms", r"mflops", r"params_m", r".+_acc", r".+_auc", r".+_tar_at_far_1e-3")


def metric_names(summary: Mapping[str, Any]) -> list[str]:
    """Every named (numeric) metric the summary's trials report, in first-seen order."""
    names: list[str] = []
    for row in summary["trials"]:
        for key in row["metrics"]:
            if key != "default" and key not in names:
                names.append(key)
    return names


def default_columns(summary: Mapping[str, Any], limit: int = 8) -> list[str]:
    """The named metrics the table shows unless told, from what the candidate trials report: the
    metric ``default`` stands for (e.g. ``val_auc``), verification accuracies / AUC / TAR, latency,
    MFLOPs, params; without any of them, the first ``limit`` metrics seen. Other steps' own metrics
    (a search's losses, a data step's counts) are there with ``--columns``."""
    rows = [r for r in summary["trials"] if r.get("role", "candidate") == "candidate"] or list(summary["trials"])
    names = metric_names({"trials": rows})
    same = [k for row in rows for k, v in row["metrics"].items()
            if k not in ("default", "objective") and row.get("default") is not None and v == row["default"]]
    chosen = same + [n for pattern in DEFAULT_COLUMN_PATTERNS for n in names if re.fullmatch(pattern, n)]
    chosen = [n for n in dict.fromkeys(chosen) if not n.startswith("best_")]  # best_val_acc repeats val_acc
    return chosen[:limit] if chosen else names[:limit]


def check_columns(summary: Mapping[str, Any], columns: list[str]) -> None:
    """Refuse ``--columns`` that no trial reports (a typo would show an empty column)."""
    from facenas.errors import ConfigError

    names = metric_names(summary)
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise ConfigError(f"--columns: no trial reports {unknown}; the metrics are: {', '.join(names) or '(none)'}")


def format_table(summary: Mapping[str, Any], columns: list[str] | None = None) -> str:
    """The trials of a summary as a Markdown table (named metrics: ``columns``, else :func:`default_columns`)."""
    names = list(columns) if columns is not None else default_columns(summary)
    head = ["step", "role", "index", "status", "trial", "default", *names, "seconds", "checkpoint / folder"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary["trials"]:
        idx = f"{row['index']}" + (f" (retry {row['attempt']})" if row["attempt"] else "")
        cells = [row["step"], row.get("role", "candidate"), idx, row["status"], row["trial_id"], row["default"],
                 *[row["metrics"].get(n) for n in names], row["duration_s"], row["checkpoint"] or row["out_dir"]]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines)


def format_summary(summary: Mapping[str, Any], columns: list[str] | None = None) -> str:
    """Human-readable report: status, steps, trial table (``columns``: see :func:`format_table`), best architectures."""
    out = [f"# facenas experiment {summary.get('experiment_id') or ''}".rstrip(), "",
           f"status: {summary['status']}", f"output: {summary['output_dir']}", "", "## steps", ""]
    for s in summary["steps"]:
        # the advisor's "k/n succeeded" note repeats the counts; other notes (a skip's reason) are news
        note = f" -- {s['note']}" if s.get("note") and not re.fullmatch(r"\d+/\d+ succeeded", s["note"]) else ""
        stopped = f", {s['stopped']} cancelled/stopped/lost" if s.get("stopped") else ""
        out.append(f"- {s['name']} ({s['stage']}): {s['status']}, {s['succeeded']}/{s['trials']} succeeded{stopped}, "
                   f"best default {_fmt(s['best_default'])}{note}")
    out += ["", "## trials", "", format_table(summary, columns), ""]
    if summary["best_architectures"]:
        out += [f"## best architectures (step {summary['best_architectures_step']})", ""]
        for entry in summary["best_architectures"]:
            out.append(f"{entry['rank']}. default {_fmt(entry['default'])}: {json.dumps(entry['arch']['sample'])}"
                       + (f" -- checkpoint {entry['checkpoint']}" if entry["checkpoint"] else ""))
    return "\n".join(out) + "\n"


def write_summary(output_dir: str | os.PathLike, experiment_id: str | None = None) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.md`` and ``best_architectures.json``; return the summary."""
    root = Path(output_dir)
    summary = summarize(root, experiment_id)
    write_json(root / SUMMARY_JSON, summary)
    write_json(root / BEST_ARCHS_JSON, {"step": summary["best_architectures_step"], "ranking": summary["best_architectures"]})
    tmp = root / (SUMMARY_MD + ".tmp")
    tmp.write_text(format_summary(summary), encoding="utf-8")
    os.replace(tmp, root / SUMMARY_MD)
    return summary
