"""What a trial costs under NNI beyond the work it runs: every ``recipes/nni/*_test.yml`` through
NNI (``facenas nni create --wait``) vs ``facenas nni run-local``, side by side.

One command (from the repo root; sequential, loopback only, bounded by ``--timeout`` per run)::

    python -m benchmarks.bench_nni_overhead [--only ofa_test,tnas_test] [--label floor] [--port 17460]
    python -m benchmarks.bench_nni_overhead --only toy_test --variants nnictl,inprocess,default --label floor_steps

Both sides are timed the same way: the wall time of the user-visible command as a fresh process,
from its start (interpreter start-up and imports included) to its end:

- ``run_local_s``: ``python -m facenas nni run-local FILE --output DIR --json`` (``run_local_stage_by_step_s``:
  its stages' own seconds per step);
- ``nnictl_s``: ``python -m facenas nni create FILE --port P --wait --json``: validation, NNI's manager
  started, the dispatcher and the trials, until the experiment is seen DONE (``/check-status`` polled
  every 0.1 s). Until commit 6bf5455 this was measured from a ``launch.create`` call inside the
  benchmark's own process (its imports already paid, so the create command's start-up and its
  ``import nni`` were missing on this side only) to DONE polled every 0.5 s. ``register_s``
  (``facenas nni register``, once per environment) and ``stop_s`` (``nnictl stop`` after DONE, until
  no process of the experiment is left) are recorded apart.

``--variants`` measures each launch change on its own (same file, back to back): ``nnictl`` is the
launch before it (a facenas process validates, then ``nnictl create`` -- a second interpreter
importing ``nni`` -- and NNI's dispatcher and version probe as fresh interpreters; the benchmark
polls for DONE as ``--wait`` does); ``inprocess``: ``facenas nni create`` starting the manager in its
own process, NNI's processes still fresh interpreters (``FACENAS_NNI_PYTHON_SERVER=0``); ``default``:
as shipped (NNI's processes forked from the python-mode warm server, ``adapters/nni/warm.py``).

Per run, ``timeline_s`` (seconds from the command's start) says where the time went, from:
the process table sampled every 50 ms (``processes``: start from the kernel's start time, 10 ms
resolution, end when last seen: the create command, NNI's manager, the dispatcher, the version
probe, each trial process); NNI's manager log (1 s resolution: ``manager_log``); the python-mode
server's and the warm trial server's logs (ms: ready, each fork); NNI's trial records (ms: each
trial's start and end); DONE seen; ``nnictl stop``. ``phases_s`` sums it up: ``to_manager_s`` (command
start to the manager process), ``manager_to_dispatcher_s``, ``dispatcher_to_probe_s`` (the
dispatcher's import and connection), ``probe_s``, ``probe_to_first_trial_s``, ``trials_span_s``,
``gaps_s`` (time with no trial running between the first start and the last end: NNI's 0.5 s polls),
``tail_s`` (last trial end to DONE seen by the command), ``exit_s`` (DONE seen to the command's
end: printing the summary, the interpreter's exit). Also ``ratio`` = nnictl_s / run_local_s (the goal: <= 2),
``trials``, ``overhead_per_trial_s``, ``stage_s``, ``in_trial_overhead_s``, ``gap_s`` (mean gap), and
``cold_process_import_s``: what a fresh interpreter takes for NNI's processes (``nnictl``, the
version probe, the dispatcher with the facenas advisor) and a cold trial's imports, best of 2.

``loadavg_1m_before`` and ``load`` say how busy the shared machine was (``--load-note`` records what
ran beside, e.g. two niced trainings). Files whose tuner is not a facenas advisor
(``toy_tpe_test.yml``) have no ``run-local``: only the NNI time is recorded. ``--label`` names the run;
the file keeps the other labels' runs (``before`` / ``after`` / ``after_merge``: earlier runs,
measured the earlier way described above).
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
import threading
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


class ProcessSampler:
    """The process table every ``interval`` s, in a thread: when processes of interest started and ended.

    Start times come from the kernel (``/proc/PID/stat``, 10 ms ticks), end times from the first scan
    that no longer sees the process (up to ``interval`` late). Only new pids' command lines are read.
    """

    #: (kind, what the command line contains), first match wins; forked processes show their parent's
    KINDS = (("probe", "collect_version_info"), ("dispatcher", "-m nni --exp_params"), ("nnictl", "nni.tools.nnictl"),
             ("manager", "nni_node/main.js"), ("python_server", "--mode python"), ("trial", "facenas.adapters.nni.trial"),
             ("create", "nni create"), ("run_local", "nni run-local"))

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.seen: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")
        self._boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
        self._ignore = {int(n) for n in os.listdir("/proc") if n.isdigit()}  # what ran before

    def __enter__(self) -> "ProcessSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _scan(self) -> None:
        now = time.time()
        pids = {int(n) for n in os.listdir("/proc") if n.isdigit()}
        for pid in pids - self._ignore - set(self.seen):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                start = self._boot + int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]) / self._tick
            except (OSError, ValueError, IndexError):
                continue
            kind = next((k for k, needle in self.KINDS if needle in cmd), None)
            if kind is None:
                self._ignore.add(pid)
                continue
            self.seen[pid] = {"kind": kind, "start": start, "end": None, "cmd": cmd[:160]}
        for pid, rec in self.seen.items():
            if rec["end"] is None and pid not in pids:
                rec["end"] = now

    def _run(self) -> None:
        while not self._stop.is_set():
            self._scan()
            self._stop.wait(self.interval)
        self._scan()

    def events(self, t0: float) -> list[dict[str, Any]]:
        """Processes seen, seconds from ``t0``, by start time."""
        out = [{"pid": pid, "kind": r["kind"], "start": round(r["start"] - t0, 2),
                "end": round(r["end"] - t0, 2) if r["end"] is not None else None} for pid, r in self.seen.items()]
        return sorted(out, key=lambda e: e["start"])


def run_local(path: Path, timeout: float) -> dict[str, Any]:
    from facenas.adapters.nni.launch import load_yaml
    from facenas.adapters.nni.pipeline import pipeline_config_of

    if pipeline_config_of(load_yaml(path).get("tuner")) is None:
        return {"run_local_s": None, "note": "its tuner is not a facenas advisor: no run-local"}
    with tempfile.TemporaryDirectory(prefix="facenas-bench-local-") as tmp, ProcessSampler():
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


def _server_log_times(path: Path) -> dict[str, Any]:
    """Unix times in a warm server's log: ``ready``, and each fork with what it ran (python mode)."""
    out: dict[str, Any] = {"forks": []}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if "ready at unix" in line and "ready" not in out:
            out["ready"] = float(line.rsplit("ready at unix", 1)[1].split()[0])
        elif ", forked at unix" in line:
            what = line.split(" runs ", 1)[1].split(", forked at unix")[0] if " runs " in line else "?"
            out["forks"].append((what, float(line.rsplit("forked at unix", 1)[1].split()[0])))
    return out


def _timeline(t0: float, marks: dict[str, float], trials: list[dict[str, Any]], procs: list[dict[str, Any]],
              work: Path, exp_id: str, output_dir: Path | None) -> dict[str, Any]:
    """Where the time of an NNI run went, seconds from the command's start ``t0`` (see the module docstring)."""
    def rel(x: float | None) -> float | None:
        return round(x - t0, 2) if x is not None else None

    log_dir = next(iter(work.rglob(f"{exp_id}/log")), None) if exp_id else None
    manager = {k: rel(v) for k, v in (_log_times(log_dir / "nnimanager.log", MANAGER_MARKS) if log_dir else {}).items()}
    py = _server_log_times(log_dir / "facenas_python_server.log") if log_dir else {"forks": []}
    warm_trials = _server_log_times(output_dir / "warm_server.log") if output_dir else {}
    spans = sorted((t["raw"]["startTime"] / 1000.0, t["raw"]["endTime"] / 1000.0) for t in trials
                   if (t.get("raw") or {}).get("startTime") and (t.get("raw") or {}).get("endTime"))

    def first(kind: str, key: str = "start") -> float | None:
        hits = [p[key] for p in procs if p["kind"] == kind and p.get(key) is not None]
        return min(hits) if hits else None

    gaps, busy = 0.0, None
    for start, end in spans:
        if busy is not None and start > busy:
            gaps += start - busy
        busy = end if busy is None else max(busy, end)
    tl = {
        "manager_process": first("manager"), "nnictl_process": first("nnictl"),
        "python_server_ready": rel(py.get("ready")),
        "dispatcher_process": first("dispatcher"),
        "dispatcher_forked": next((rel(t) for what, t in py["forks"] if what == "-m nni"), None),
        "probe_forked": next((rel(t) for what, t in py["forks"] if "collect_version_info" in what), None),
        "warm_trial_server_ready": rel(warm_trials.get("ready")),
        "probe_process": first("probe"), "probe_end": first("probe", "end"),
        "first_trial_start": rel(spans[0][0]) if spans else None,
        "last_trial_end": rel(max(e for _, e in spans)) if spans else None,
        "done_seen": rel(marks.get("ended")), "command_end": rel(marks.get("command_end")),
        **{k: rel(v) for k, v in marks.items() if k.startswith("create_")},
        "stop_called": rel(marks.get("stop")), "stopped": rel(marks.get("stopped")),
        "trials": [[rel(a), rel(b)] for a, b in spans], "manager_log": manager,
    }

    def d(a: str, b: str) -> float | None:
        return round(tl[b] - tl[a], 2) if tl.get(a) is not None and tl.get(b) is not None else None

    for proc_key, fork_key in (("dispatcher_process", "dispatcher_forked"), ("probe_process", "probe_forked")):
        if tl[proc_key] is None:  # a process shorter than the table's sampling: its fork in the server's log
            tl[proc_key] = tl[fork_key]
    tl["phases_s"] = {
        "to_manager_s": tl["manager_process"], "manager_to_dispatcher_s": d("manager_process", "dispatcher_process"),
        "dispatcher_to_probe_s": d("dispatcher_process", "probe_process"), "probe_s": d("probe_process", "probe_end"),
        "probe_to_first_trial_s": d("probe_end", "first_trial_start"), "trials_span_s": d("first_trial_start", "last_trial_end"),
        "gaps_s": round(gaps, 2) if spans else None, "tail_s": d("last_trial_end", "done_seen"),
        "exit_s": d("done_seen", "command_end"),
        "stop_s": d("stop_called", "stopped"),
    }
    return tl


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
    return {
        "stage_s": round(stage, 2),
        "in_trial_overhead_s": round(sum(in_trial) / len(in_trial), 2) if in_trial else None,
        "gap_s": round(sum(gaps) / len(gaps), 2) if gaps else 0.0,
        "gaps": len(gaps),
    }


#: what the launch before the in-process manager did, as one command (``--variants nnictl``): the
#: facenas process validates and registers, then runs ``nnictl create`` on the resolved file
LEGACY_CREATE = """
import sys, tempfile, yaml
from pathlib import Path
from facenas.adapters.nni import launch
path, port = sys.argv[1], sys.argv[2]
env = launch.nni_env()
cfg, _ = launch.prepare_config(path, None, env)
launch.register(env)
with tempfile.TemporaryDirectory() as tmp:
    resolved = Path(tmp) / Path(path).name
    resolved.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = launch.nnictl(["create", "--config", resolved, "--port", port], env=env, timeout=300).stdout
print(out)
"""


def run_nnictl(path: Path, timeout: float, port: int | None, variant: str = "default") -> dict[str, Any]:
    """``facenas nni create FILE --wait`` as a fresh process, timed from its start to its end (see the module docstring)."""
    import re

    from facenas.adapters.nni import launch, warm
    from facenas.adapters.nni.e2e import TERMINAL

    work = Path(tempfile.mkdtemp(prefix="facenas-bench-nni-"))
    env = launch.nni_env(home=work / "home", config_dir=work / "nni-config")
    if variant == "inprocess":
        env[warm.PYTHON_SERVER_ENV] = "0"
    port = port or launch.free_port()
    t_register = time.time()
    launch.register(env)
    marks: dict[str, float] = {}
    exp_id, info, status, trials, leftovers = "", {}, "?", [], []
    row: dict[str, Any] = {"variant": variant, "register_s": round(time.time() - t_register, 2)}
    with ProcessSampler() as sampler:
        t0 = time.time()
        try:
            if variant == "nnictl":
                proc = subprocess.run([sys.executable, "-c", LEGACY_CREATE, str(path), str(port)], env=env,
                                      capture_output=True, text=True, timeout=timeout)
                found = re.search(r"Experiment ID:\s*(\w+)", proc.stdout + proc.stderr)
                exp_id = found.group(1) if found else ""
                if exp_id:
                    status = launch.wait_done(port, timeout=timeout, poll=0.1)
                    info = {"output_dir": str(work / "home" / "nni-experiments" / exp_id / "facenas")}
            else:
                proc = subprocess.run([sys.executable, "-m", "facenas", "nni", "create", str(path), "--port", str(port),
                                       "--wait", "--json", "--timeout", str(timeout)], env=env, capture_output=True,
                                      text=True, timeout=timeout + 60)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                info = json.loads(lines[-1]) if lines else {}
                exp_id, status = info.get("experiment_id", ""), info.get("status", "?")
            marks["command_end"] = time.time()
            marks["ended"] = (info.get("timeline") or {}).get("end_seen") or marks["command_end"]
            marks.update({f"create_{k}": v for k, v in (info.get("timeline") or {}).items() if k not in ("end_seen",)})
            if not exp_id:
                return {**row, "nnictl_s": None, "error": (proc.stderr.strip().splitlines() or [str(proc.returncode)])[-1]}
            client = launch.RestClient(port)
            trials = client.trials()
        finally:
            if exp_id:
                watched = launch.experiment_processes(exp_id)
                marks["stop"] = time.time()
                leftovers, stop_error = launch.stop_and_wait(exp_id, watched, env=env)
                if stop_error:
                    row["stop_error"] = stop_error
                marks["stopped"] = time.time()
                if leftovers:
                    launch.terminate(leftovers)
    out_dir = Path(info["output_dir"]) if info.get("output_dir") else None
    failed = sum(t["status"] == "FAILED" for t in trials)
    problems = []
    if status != "DONE":
        problems.append(f"ended as {status}")
    if failed != EXPECT_FAILED.get(path.stem, 0):
        problems.append(f"{failed} trial(s) FAILED, expected {EXPECT_FAILED.get(path.stem, 0)}")
    if any(t["status"] not in TERMINAL for t in trials):
        problems.append("trials still running")
    if leftovers:
        problems.append(f"processes left after nnictl stop: {leftovers}")
    res = type("Res", (), {"trials": trials, "started_at": t0})()
    row.update({"nnictl_s": round(marks["command_end"] - t0, 2), "trials": len(trials), "status": status,
                "units": len(list(out_dir.glob("*/*/result.json"))) if out_dir else None, **_trial_times(res),
                "stage_by_step_s": _stage_by_step(out_dir) if out_dir else {},
                "stop_s": round(marks["stopped"] - marks["stop"], 2) if "stopped" in marks else None,
                "timeline_s": _timeline(t0, marks, trials, sampler.events(t0), work, exp_id, out_dir),
                "processes": [e for e in sampler.events(t0) if e["kind"] not in ("trial",)][:40]})
    row["phases_s"] = row["timeline_s"].pop("phases_s")
    if problems:
        row["problems"] = problems
    shutil.rmtree(work, ignore_errors=True)
    return row


def _floor(row: dict[str, Any]) -> dict[str, Any] | None:
    """Where the NNI side's time goes beyond the command's own start-up and its trials' work, per phase.

    ``nni_poll_gaps_s`` (no trial running between trials: NNI's manager checks trials and submits new
    ones every 0.5 s, fixed in its code), ``end_detection_s`` (last trial end to DONE seen: the same
    loop, the advisor's REST update), ``post_to_first_trial_s`` (config posted to the first trial:
    dispatcher, version probe, submission), ``create_to_post_s`` (the command's start-up: interpreter,
    ``nni``'s dependencies and ``torch`` imported, validation), ``exit_s``; ``ratio_without_poll_gaps_and_end``:
    the ratio were NNI's polling instant.
    """
    tl, ph = row.get("timeline_s") or {}, row.get("phases_s") or {}
    if not tl or row.get("nnictl_s") is None:
        return None
    posted, first = tl.get("create_posted"), tl.get("first_trial_start")
    gaps, tail = ph.get("gaps_s") or 0.0, ph.get("tail_s") or 0.0
    out = {"create_to_post_s": posted, "post_to_first_trial_s": round(first - posted, 2) if None not in (first, posted) else None,
           "nni_poll_gaps_s": gaps, "end_detection_s": tail, "exit_s": ph.get("exit_s")}
    if row.get("run_local_s"):
        out["ratio_without_poll_gaps_and_end"] = round((row["nnictl_s"] - gaps - tail) / row["run_local_s"], 2)
    return out


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    floor = _floor(row)
    if floor is not None:
        row["floor_s"] = floor
    if row.get("run_local_s") and row.get("nnictl_s") and row.get("trials"):
        row["ratio"] = round(row["nnictl_s"] / row["run_local_s"], 2)
        row["overhead_per_trial_s"] = round((row["nnictl_s"] - row["run_local_s"]) / row["trials"], 2)
        row["within_2x"] = row["ratio"] <= 2.0
        start = (row.get("timeline_s") or {}).get("first_trial_start")
        if start is not None:  # NNI's start-up alone, as a share of the 2x budget
            row["startup_s"] = start
            row["startup_share_of_2x_budget"] = round(start / (2 * row["run_local_s"]), 2)
    return row


def _load() -> dict[str, Any]:
    """How busy the machine is: load averages and the processes using most CPU now (niceness, %CPU)."""
    out = subprocess.run(["ps", "-eo", "ni,pcpu,comm,args", "--sort=-pcpu"], capture_output=True, text=True).stdout.splitlines()
    top = [" ".join(line.split()[:3] + line.split()[3:8]) for line in out[1:6]]
    return {"loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()], "top_cpu": top}


def _save(out: Path, label: str, stem: str, row: dict[str, Any], costs: dict[str, float] | None, warm_trials: bool,
          note: str | None = None, keep_meta: bool = False) -> None:
    from facenas.utils.io import read_json

    runs = {}
    if out.is_file():  # saved after every file: other labels' runs and this run's earlier files are kept
        runs = dict((read_json(out).get("result") or {}).get("runs") or {})
    old = dict(runs.get(label) or {})
    runs[label] = {"commit": _git_commit(), "warm_trials": warm_trials, "files": {**(old.get("files") or {}), stem: row},
                   "cold_process_import_s": costs or old.get("cold_process_import_s"),
                   "timing": "both sides: wall time of the user-visible command as a fresh process "
                             "(run-local; create --wait to DONE seen at 0.1 s polls)",
                   "load_note": note or old.get("load_note"),
                   "run_command": " ".join(["python -m benchmarks.bench_nni_overhead", *sys.argv[1:]]),
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if keep_meta:  # derived fields recomputed: the run's own commit and date stay
        runs[label].update({k: old[k] for k in ("commit", "date", "warm_trials", "run_command") if k in old})
    save_result("bench_nni_overhead", {"runs": runs, "goal": "nnictl_s <= 2 x run_local_s for every *_test.yml"})


def main(argv: list[str] | None = None) -> None:
    from facenas.adapters.nni import warm
    from facenas.utils.log import setup_logging

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated file stems (e.g. ofa_test,tnas_test); default: every *_test.yml")
    p.add_argument("--label", default="floor", help="name of this run in the results file")
    p.add_argument("--variants", default="default",
                   help="comma-separated launches to time per file: nnictl (before the in-process manager), inprocess "
                        "(no python-mode server), default; each but the last is saved as LABEL_VARIANT")
    p.add_argument("--timeout", type=float, default=900, help="seconds per run, each way")
    p.add_argument("--port", type=int, default=None, help="first NNI port (each run takes the next even one; default: a free loopback port)")
    p.add_argument("--port-span", type=int, default=10, help="ports from --port the runs cycle through")
    p.add_argument("--unbatched", action="store_true",
                   help="drop the steps' `batch` (one trial per unit): the state before batched units")
    p.add_argument("--no-imports", dest="imports", action="store_false",
                   help="skip timing what a cold trial process imports")
    p.add_argument("--load-note", help="what ran beside the benchmark (recorded with the run)")
    p.add_argument("--recompute", metavar="LABEL", help="recompute the derived fields (ratio, floor_s) of a saved run; run nothing")
    args = p.parse_args(argv)
    setup_logging(0)
    if args.recompute:
        from facenas.utils.io import read_json

        saved = (read_json(RESULTS_DIR / "bench_nni_overhead.json").get("result") or {}).get("runs") or {}
        for stem, row in ((saved.get(args.recompute) or {}).get("files") or {}).items():
            _save(RESULTS_DIR / "bench_nni_overhead.json", args.recompute, stem, _finish(row), None, True, keep_meta=True)
        return
    files = sorted(RECIPES.glob("*_test.yml"))
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        files = [f for f in files if f.stem in wanted]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - {"nnictl", "inprocess", "default"}
    if unknown:
        p.error(f"--variants: unknown {sorted(unknown)}; choose from nnictl, inprocess, default")
    out = RESULTS_DIR / "bench_nni_overhead.json"
    costs = import_costs() if args.imports else None
    if costs:
        print("imports", json.dumps(costs), flush=True)
    unbatched_dir = Path(tempfile.mkdtemp(prefix="facenas-bench-unbatched-"))
    # a stopped manager's port lingers in TIME_WAIT: each run takes the next even port of --port-span, cyclically
    ports = itertools.cycle(range(args.port, args.port + args.port_span, 2)) if args.port else None
    for original in files:
        path = unbatched_copy(original, unbatched_dir) if args.unbatched else original
        before = _load()
        local = run_local(path, args.timeout)
        for variant in variants:
            row = _finish({"batched": not args.unbatched, "loadavg_1m_before": before["loadavg_1_5_15"][0],
                           "load": before, **local, **run_nnictl(path, args.timeout, next(ports) if ports else None, variant)})
            label = args.label if variant == variants[-1] else f"{args.label}_{variant}"
            print(original.stem, label, json.dumps({k: row.get(k) for k in ("run_local_s", "nnictl_s", "ratio", "phases_s",
                                                                              "problems")}), flush=True)
            _save(out, label, original.stem, row, costs, warm.enabled(), args.load_note)


if __name__ == "__main__":
    main()
