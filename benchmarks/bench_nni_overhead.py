"""What a trial costs under ``nnictl`` beyond the work it runs: every ``recipes/nni/*_test.yml``
through nnictl vs ``facenas nni run-local``, side by side.

One command (from the repo root; sequential, loopback only, bounded by ``--timeout`` per run)::

    python -m benchmarks.bench_nni_overhead [--only ofa_test,tnas_test] [--label after] [--port 17150]

For each file, back to back on the same machine (a shared 2-core machine: a background training
holds one core all the time, other work comes and goes; ``loadavg_1m_before`` says how busy it was):

- ``run_local_s``: wall time of ``python -m facenas nni run-local FILE`` (a fresh process: the
  interpreter start and imports are paid once); ``run_local_stage_by_step_s``: its stages' own seconds per step;
- ``nnictl_s``: from the ``nnictl create`` call to the experiment seen DONE (polled every 0.5 s) by
  the end-to-end check (:func:`facenas.adapters.nni.e2e.run_experiment_e2e`) -- what a user waits
  for the results; ``register_s`` (``facenas nni register``: once per environment) and ``stop_s``
  (``nnictl stop`` after DONE) are recorded apart, ``nnictl_with_register_and_stop_s`` is all three;
- ``ratio`` = nnictl_s / run_local_s (the goal: <= 2), ``trials`` (NNI trial jobs),
  ``overhead_per_trial_s`` = (nnictl_s - run_local_s) / trials;
- where the nnictl time went, seconds from the ``nnictl create`` call (``phases_s``): the NNI
  manager's log lines (1 s resolution) for its start, the dispatcher's spawn and connection, the
  local training service ready (after NNI's version probe, a Python process that imports nni), the
  first trial submitted and DONE; the warm trial server ready; NNI's first trial start and last trial
  end (ms); summed up as ``startup_s`` (to the first trial start), ``trials_span_s`` (first start to
  last end) and ``tail_s`` (last end to DONE seen); ``startup_share_of_2x_budget`` = startup_s / (2 x
  run_local_s): above 1, NNI's start-up alone breaks the goal;
- from NNI's trial records and each trial's ``result.json``: ``stage_s`` (the stages' own time,
  summed; trials that run side by side each count), ``stage_by_step_s``, ``in_trial_overhead_s`` (mean
  of NNI's start-to-end time minus the stage's time: process start, hand-off to the warm server,
  fetching the parameters), ``gap_s`` (mean time from one trial's end to the next trial's start while
  no trial runs: NNI's polling, the advisor's answer), ``units`` (pipeline work units);
- ``cold_process_import_s``: what a fresh interpreter takes for NNI's own processes (``nnictl``,
  the training service's version probe, the dispatcher with the facenas advisor) and a cold trial's
  imports (``nni``, ``torch``, the stages, ``nni.nas``), best of 2: the fixed start-up NNI pays
  before any trial.

Files whose tuner is not a facenas advisor (``toy_tpe_test.yml``) have no ``run-local``: only the
nnictl time is recorded. ``--label`` names the run (``before`` / ``after`` a change); the file keeps
the other labels' runs, so ``benchmarks/results/bench_nni_overhead.json`` holds both side by side.
The recorded ``before`` run is the code before the start-up work of issue 17 (warm trials and
batched units already there), ``after`` the code after it, each with ``--label``; the runs of
commit c773e17 (cold trials and one trial per unit, then warm and batched, measured through
``nnictl stop``) are kept under their own names. ``--compare`` also runs, per file, nnictl as before
warm trials and batching (``FACENAS_NNI_WARM=0``, ``--unbatched``; saved as ``before``)::

    python -m benchmarks.bench_nni_overhead --label before --port 17360
    python -m benchmarks.bench_nni_overhead --label after --port 17360
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS_DIR, save_result

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "nni"
#: trials each file fails on purpose (the e2e tests' expectations)
EXPECT_FAILED = {"toy_test": 1}


def unbatched_copy(path: Path, folder: Path) -> Path:
    """``path`` with every step's ``batch`` removed (one trial per unit, as before batching), in ``folder``."""
    import yaml

    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("trialCodeDirectory", "searchSpaceFile"):
        if cfg.get(key) and not Path(str(cfg[key])).is_absolute():
            cfg[key] = str((path.parent / str(cfg[key])).resolve())
    cfg.setdefault("trialCodeDirectory", str(path.parent.resolve()))
    for step in ((cfg.get("tuner") or {}).get("classArgs") or {}).get("steps") or []:
        step.pop("batch", None)
    out = folder / path.name
    out.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return out


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _stage_by_step(root: Path) -> dict[str, float]:
    """Stage seconds per pipeline step (sum of the units' ``duration_s`` in their ``result.json``)."""
    out: dict[str, float] = {}
    for f in sorted(root.glob("*/*/result.json")):
        try:
            out[f.parent.parent.name] = out.get(f.parent.parent.name, 0.0) + float(json.loads(f.read_text()).get("duration_s") or 0.0)
        except (OSError, ValueError):
            continue
    return {k: round(v, 2) for k, v in out.items()}


def run_local(path: Path, timeout: float) -> dict[str, Any]:
    from facenas.adapters.nni.launch import load_yaml
    from facenas.adapters.nni.pipeline import pipeline_config_of

    if pipeline_config_of(load_yaml(path).get("tuner")) is None:
        return {"run_local_s": None, "note": "its tuner is not a facenas advisor: no run-local"}
    with tempfile.TemporaryDirectory(prefix="facenas-bench-local-") as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "facenas", "nni", "run-local", str(path), "--output", tmp, "--json"],
                              capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - t0
        units = len(list(Path(tmp).glob("*/*/result.json")))
        by_step = _stage_by_step(Path(tmp))
    if proc.returncode != 0:
        return {"run_local_s": None, "error": proc.stderr.strip().splitlines()[-1:] or proc.returncode}
    return {"run_local_s": round(seconds, 2), "run_local_units": units, "run_local_stage_s": round(sum(by_step.values()), 2),
            "run_local_stage_by_step_s": by_step}


#: what the processes of an nnictl experiment import before they work (each timed as a fresh
#: ``python ARGS``): NNI's own start-up (``nnictl``, the local training service's version probe,
#: the dispatcher: ``import nni`` each) and a cold trial's imports
IMPORTS = {
    "python": ["-c", "pass"],
    "nni": ["-c", "import nni"],
    "torch": ["-c", "import torch"],
    "nnictl_process": ["-m", "nni.tools.nnictl.nnictl", "--version"],
    "nni_collect_version_info": ["-m", "nni.tools.nni_manager_scripts.collect_version_info"],
    "dispatcher_imports": ["-c", "import facenas.adapters.nni.advisor"],
    "facenas_trial_entry": ["-c", "import facenas.adapters.nni.trial"],
    "facenas_stages": ["-c", "from facenas.nas.stages import STAGES; STAGES.get('ofa.evaluate')"],
    "nni_nas": ["-c", "from facenas.adapters.nni import _imports; _imports.nas()"],
    "trial_all": ["-c", "import nni, torch; from facenas.nas.stages import STAGES; STAGES.get('ofa.evaluate')"],
}


def import_costs(repeat: int = 2) -> dict[str, float]:
    """Wall seconds of a fresh ``python ARGS`` per entry of :data:`IMPORTS` (best of ``repeat``)."""
    out = {}
    for name, args in IMPORTS.items():
        best = math.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, *args], check=True, capture_output=True)
            best = min(best, time.perf_counter() - t0)
        out[name] = round(best, 2)
    return out


#: lines of NNI's manager log (``<exp>/log/nnimanager.log``) that mark a start-up phase
MANAGER_MARKS = {
    "manager_started": "Start NNI manager",
    "dispatcher_spawned": "Setup tuner...",
    "dispatcher_connected": "Add event listeners",
    "training_service_ready": "Register directory trial_code",
    "first_trial_submitted": "submitTrialJob",
    "manager_done": "Experiment done.",
}


def _log_times(path: Path, marks: dict[str, str]) -> dict[str, float]:
    """Unix time of the first line of ``path`` containing each mark (NNI logs: ``[YYYY-mm-dd HH:MM:SS]``, 1 s resolution)."""
    out: dict[str, float] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if not line.startswith("[") or "]" not in line:
            continue
        for key, mark in marks.items():
            if key not in out and mark in line:
                try:
                    out[key] = time.mktime(time.strptime(line[1:line.index("]")], "%Y-%m-%d %H:%M:%S"))
                except ValueError:
                    pass
    return out


def _timeline(res: Any) -> dict[str, Any]:
    """Where the time of an nnictl run went, seconds from the ``nnictl create`` call (see the module docstring)."""
    tl = dict(getattr(res, "timeline", None) or {})
    t0 = tl.get("create")
    if t0 is None:
        return {}
    work = Path(res.work_dir)
    logs = next(iter(work.rglob(f"{res.experiment_id}/log")), None)
    marks = _log_times(logs / "nnimanager.log", MANAGER_MARKS) if logs else {}
    out_dir = Path(res.output_dir) if res.output_dir else None
    warm_ready = None
    if out_dir and (out_dir / "warm_server.log").is_file():
        for line in (out_dir / "warm_server.log").read_text(encoding="utf-8", errors="replace").splitlines():
            if "ready at unix" in line:
                warm_ready = float(line.rsplit("ready at unix", 1)[1].split()[0])
                break
    starts = [t["raw"]["startTime"] / 1000.0 for t in res.trials if (t.get("raw") or {}).get("startTime")]
    ends = [t["raw"]["endTime"] / 1000.0 for t in res.trials if (t.get("raw") or {}).get("endTime")]

    def rel(x: float | None) -> float | None:
        return round(x - t0, 2) if x is not None else None

    phases = {"nnictl_create_returned": rel(tl.get("created")), **{k: rel(v) for k, v in marks.items()},
              "warm_server_ready": rel(warm_ready), "first_trial_start": rel(min(starts) if starts else None),
              "last_trial_end": rel(max(ends) if ends else None), "done_seen": rel(tl.get("ended"))}
    return {
        "register_s": round(tl["create"] - tl["register"], 2) if "register" in tl else None,
        "phases_s": phases,
        "startup_s": phases["first_trial_start"],
        "trials_span_s": round(max(ends) - min(starts), 2) if starts and ends else None,
        "tail_s": round(tl["ended"] - max(ends), 2) if ends and tl.get("ended") else None,
        "stop_s": round(tl["stopped"] - tl["stop"], 2) if "stopped" in tl and "stop" in tl else None,
    }


def _trial_times(res: Any) -> dict[str, Any]:
    """In-trial overhead and scheduling gaps from NNI's records and the trials' result.json files."""
    spans, stage, in_trial = [], 0.0, []
    for t in res.trials:
        raw = t.get("raw") or {}
        start, end = raw.get("startTime"), raw.get("endTime")
        if not start or not end:
            continue
        spans.append((start / 1000.0, end / 1000.0))
        env = (t.get("parameters") or {}).get("facenas") or {}
        dirs = [m["out_dir"] for m in env.get("batch") or []] or ([env["out_dir"]] if env.get("out_dir") else [])
        files = [Path(d) / "result.json" for d in dirs]
        if files and all(f.is_file() for f in files):  # a batched trial: every unit's stage time
            d = sum(float(json.loads(f.read_text()).get("duration_s") or 0.0) for f in files)
            stage += d
            in_trial.append(end / 1000.0 - start / 1000.0 - d)
    spans.sort()
    gaps, busy_until = [], None
    for start, end in spans:
        if busy_until is not None and start > busy_until:
            gaps.append(start - busy_until)
        busy_until = end if busy_until is None else max(busy_until, end)
    first_start = spans[0][0] if spans else None
    return {
        "stage_s": round(stage, 2),
        "in_trial_overhead_s": round(sum(in_trial) / len(in_trial), 2) if in_trial else None,
        "gap_s": round(sum(gaps) / len(gaps), 2) if gaps else 0.0,
        "gaps": len(gaps),
        "first_trial_start_s": round(first_start - res.started_at, 2) if first_start and getattr(res, "started_at", None) else None,
    }


def run_nnictl(path: Path, timeout: float, port: int | None) -> dict[str, Any]:
    from facenas.adapters.nni.e2e import run_experiment_e2e
    from facenas.errors import FacenasError

    name = path.stem
    work = Path(tempfile.mkdtemp(prefix="facenas-bench-nni-"))
    t0 = time.perf_counter()
    try:
        res = run_experiment_e2e(path, timeout=timeout, expect_failed=EXPECT_FAILED.get(name, 0), port=port,
                                 work_dir=work, keep=True)
    except FacenasError as exc:
        return {"nnictl_s": round(time.perf_counter() - t0, 2), "error": str(exc).splitlines()[0], "kept": str(work)}
    seconds = time.perf_counter() - t0
    tl = res.timeline
    res.started_at = tl.get("create", time.time() - seconds)
    units = len(list(Path(res.output_dir).glob("*/*/result.json"))) if res.output_dir else None
    to_done = round(tl["ended"] - tl["create"], 2) if "ended" in tl and "create" in tl else None
    by_step = _stage_by_step(Path(res.output_dir)) if res.output_dir else {}
    row = {"nnictl_s": to_done, "nnictl_with_register_and_stop_s": round(seconds, 2), "trials": len(res.trials),
           "units": units, "status": res.status, **_trial_times(res), "stage_by_step_s": by_step, **_timeline(res)}
    shutil.rmtree(work, ignore_errors=True)
    return row


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("run_local_s") and row.get("nnictl_s") and row.get("trials"):
        row["ratio"] = round(row["nnictl_s"] / row["run_local_s"], 2)
        row["overhead_per_trial_s"] = round((row["nnictl_s"] - row["run_local_s"]) / row["trials"], 2)
        row["within_2x"] = row["ratio"] <= 2.0
        if row.get("startup_s") is not None:  # NNI's start-up alone, as a share of the 2x budget
            row["startup_share_of_2x_budget"] = round(row["startup_s"] / (2 * row["run_local_s"]), 2)
    return row


def _save(out: Path, label: str, stem: str, row: dict[str, Any], costs: dict[str, float] | None, warm_trials: bool) -> None:
    from facenas.utils.io import read_json

    runs = {}
    if out.is_file():  # saved after every file: other labels' runs and this run's earlier files are kept
        runs = dict((read_json(out).get("result") or {}).get("runs") or {})
    old = dict(runs.get(label) or {})
    runs[label] = {"commit": _git_commit(), "warm_trials": warm_trials, "files": {**(old.get("files") or {}), stem: row},
                   "cold_process_import_s": costs or old.get("cold_process_import_s"),
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    save_result("bench_nni_overhead", {"runs": runs, "goal": "nnictl_s <= 2 x run_local_s for every *_test.yml"})


def main(argv: list[str] | None = None) -> None:
    from facenas.adapters.nni import warm
    from facenas.utils.log import setup_logging

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated file stems (e.g. ofa_test,tnas_test); default: every *_test.yml")
    p.add_argument("--label", default="after", help="name of this run in the results file (before / after)")
    p.add_argument("--compare", action="store_true",
                   help="per file, back to back: run-local, nnictl as before (FACENAS_NNI_WARM=0, --unbatched) saved "
                        "as 'before', nnictl as is saved as 'after' (both against the same run-local time)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per run, each way")
    p.add_argument("--port", type=int, default=None, help="first NNI port (each run takes the next even one; default: a free loopback port)")
    p.add_argument("--port-span", type=int, default=10, help="ports from --port the runs cycle through")
    p.add_argument("--unbatched", action="store_true",
                   help="drop the steps' `batch` (one trial per unit): the state before batched units")
    p.add_argument("--no-imports", dest="imports", action="store_false",
                   help="skip timing what a cold trial process imports")
    args = p.parse_args(argv)
    setup_logging(0)
    files = sorted(RECIPES.glob("*_test.yml"))
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        files = [f for f in files if f.stem in wanted]
    out = RESULTS_DIR / "bench_nni_overhead.json"
    costs = import_costs() if args.imports else None
    if costs:
        print("imports", json.dumps(costs), flush=True)
    unbatched_dir = Path(tempfile.mkdtemp(prefix="facenas-bench-unbatched-"))
    # a stopped manager's port lingers in TIME_WAIT: each run takes the next even port of --port-span, cyclically
    ports = itertools.cycle(range(args.port, args.port + args.port_span, 2)) if args.port else None
    for original in files:
        unbatched = unbatched_copy(original, unbatched_dir)
        path = unbatched if args.unbatched else original
        load = round(os.getloadavg()[0], 2)  # this machine also runs other work (a background training holds a core)
        local = run_local(path, args.timeout)
        if args.compare:
            os.environ[warm.ENABLE_ENV] = "0"
            try:
                before = _finish({"batched": False, **local, **run_nnictl(unbatched, args.timeout, next(ports) if ports else None)})
            finally:
                os.environ.pop(warm.ENABLE_ENV, None)
            print(original.stem, "before", json.dumps(before), flush=True)
            _save(out, "before", original.stem, before, costs, False)
        row = _finish({"batched": not args.unbatched, "loadavg_1m_before": load, **local,
                       **run_nnictl(path, args.timeout, next(ports) if ports else None)})
        print(original.stem, args.label, json.dumps(row), flush=True)
        _save(out, args.label, original.stem, row, costs, warm.enabled())


if __name__ == "__main__":
    main()
