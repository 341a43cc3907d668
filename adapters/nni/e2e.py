"""The end-to-end check every facenas experiment file passes at test scale.

One call for every method's ``recipes/nni/<method>_test.yml``::

    from facenas.adapters.nni.e2e import run_experiment_e2e

    result = run_experiment_e2e("recipes/nni/ofa_test.yml", timeout=600, expect_failed=0,
                                required_metrics={"retrain": ["lfw_devtest_acc", "mflops", "params_m"]})

What it does, in a temporary NNI home (``HOME``, ``NNI_CONFIG_DIR`` under a temp folder, so
``~/nni-experiments`` and the venv's registered algorithms are untouched):

1. registers the facenas advisors (``facenas nni register``);
2. ``nnictl create`` on a free loopback port through :func:`facenas.adapters.nni.launch.create`
   (``CI=true``, no stdin, servers bound to 127.0.0.1);
3. checks nothing listens on that port except loopback;
4. polls the REST API (``/api/v1/nni/check-status``, ``/trial-jobs``; final metrics are JSON
   encoded twice there) until the experiment is DONE, or has no more trials and every trial ended,
   or ERROR, or the timeout;
5. asserts: the experiment is DONE (a facenas advisor ends it; with other tuners "no more trial"
   with every trial ended counts too); every trial SUCCEEDED except exactly ``expect_failed`` FAILED ones, and if some failed,
   trials still succeeded after the first failure (the search went on); every successful trial's
   final metric is a dict with a numeric ``default`` and at least one named metric, including
   ``required_metrics``; NNI records each trial with the parameters it really ran; the facenas
   output folder has a ``result.json`` per trial and a summary; the server listened on loopback only;
6. ``nnictl stop``, then checks that no process of the experiment is left (the NNI manager, the
   dispatcher, trials: found by pid ancestry, command line and ``NNI_EXP_ID``) and the port is
   closed; leftovers are killed and reported as a failure.

A failed check raises :class:`E2EFailure` with the trial statuses, the failed trials' errors and
the tail of the dispatcher log. ``python -m facenas.adapters.nni.e2e FILE.yml`` runs it from a shell.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from facenas.adapters.nni import launch
from facenas.adapters.nni.paths import read_manifest
from facenas.adapters.nni.pipeline import pipeline_config_of
from facenas.adapters.nni.results import summarize
from facenas.errors import FacenasError

log = logging.getLogger(__name__)

TERMINAL = {"SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED"}


class E2EFailure(FacenasError, AssertionError):
    """The end-to-end check of an experiment file failed."""


@dataclasses.dataclass
class E2EResult:
    """What the check saw."""

    experiment_id: str
    status: str
    trials: list[dict[str, Any]]
    summary: dict[str, Any]
    output_dir: str
    work_dir: str
    port: int
    duration_s: float
    bound_addresses: list[str]
    leftover_processes: list[int]
    #: unix times of the check's phases: ``register``, ``create`` (nnictl create called), ``created``
    #: (it returned), ``ended`` (the experiment seen DONE / ended), ``stop`` (nnictl stop called), ``stopped``
    timeline: dict[str, float] = dataclasses.field(default_factory=dict)

    def succeeded(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["status"] == "SUCCEEDED"]

    def failed(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["status"] == "FAILED"]


def _all_ended(status: str, trials: list[dict[str, Any]]) -> bool:
    """No more trials will come and every trial has ended (the facenas advisors then turn it DONE)."""
    return status in ("NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL") and bool(trials) and all(t["status"] in TERMINAL for t in trials)


def _log_tail(work: Path, exp_id: str, name: str, lines: int = 40) -> str:
    for path in work.rglob(f"{exp_id}/log/{name}"):
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])
    return f"({name} not found)"


def _describe(trials: list[dict[str, Any]], output_dir: Path) -> str:
    rows = []
    for t in trials:
        env = (t.get("parameters") or {}).get("facenas") or {}
        where = f"{env.get('step', '?')}[{env.get('index', '?')}]"
        err = ""
        if t["status"] != "SUCCEEDED" and env.get("out_dir"):
            res = Path(env["out_dir"]) / "result.json"
            if res.is_file():
                err = " -- " + str(json.loads(res.read_text()).get("error"))
        rows.append(f"  {t['trial_id']} {where}: {t['status']} final={t.get('final')}{err}")
    return "\n".join(rows) or "  (no trials)"


def _check(result: E2EResult, expect_failed: int, required_metrics: Sequence[str] | Mapping[str, Sequence[str]],
           min_trials: int,
           require_done: bool, facenas_advisor: bool = True) -> list[str]:
    problems = []
    trials = sorted(result.trials, key=lambda t: t.get("sequence_id") or 0)
    ok_status = ("DONE",) if require_done else ("DONE", "NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL")
    if result.status not in ok_status:
        problems.append(f"experiment ended as {result.status}, expected {' or '.join(ok_status)}")
    if len(trials) < min_trials:
        problems.append(f"{len(trials)} trial(s) ran, expected at least {min_trials}")
    bad = [t for t in trials if t["status"] not in ("SUCCEEDED", "FAILED")]
    if bad:
        problems.append(f"trials neither SUCCEEDED nor FAILED: {[(t['trial_id'], t['status']) for t in bad]}")
    failed = [t for t in trials if t["status"] == "FAILED"]
    if len(failed) != expect_failed:
        problems.append(f"{len(failed)} trial(s) FAILED, expected {expect_failed}")
    if failed:
        first = min(t.get("sequence_id") or 0 for t in failed)
        if not any(t["status"] == "SUCCEEDED" and (t.get("sequence_id") or 0) > first for t in trials):
            problems.append("no trial succeeded after the first failure: the search did not go on")
    for t in trials:
        if t["status"] != "SUCCEEDED":
            continue
        final = t.get("final")
        if not isinstance(final, dict) or not isinstance(final.get("default"), (int, float)):
            problems.append(f"trial {t['trial_id']}: final metric {final!r} is not a dict with a numeric 'default'")
            continue
        named = [k for k in final if k != "default"]
        if not named:
            problems.append(f"trial {t['trial_id']}: final metric has no named metric besides 'default': {final}")
        step = ((t.get("parameters") or {}).get("facenas") or {}).get("step", "trials")
        wanted = required_metrics.get(step, required_metrics.get("*", ())) if isinstance(required_metrics, Mapping) \
            else required_metrics
        missing = [m for m in wanted if m not in final]
        if missing:
            problems.append(f"trial {t['trial_id']}: final metric lacks {missing}: {sorted(final)}")
    for t in trials:  # NNI 3.0 can record a trial with another trial's parameters (trial.fetch_parameters_in_order)
        env = (t.get("parameters") or {}).get("facenas") or {}
        params_file = Path(env["out_dir"]) / "params.json" if env.get("out_dir") else None
        if params_file is not None and params_file.is_file():
            ran = (json.loads(params_file.read_text()).get("nni") or {}).get("trial_id")
            if ran != t["trial_id"]:
                problems.append(f"NNI records trial {t['trial_id']} with the parameters trial {ran} ran "
                                f"({env.get('step')}[{env.get('index')}]): the portal shows swapped parameters")
    out = Path(result.output_dir)
    n_results = len(list(out.glob("*/result.json")) + list(out.glob("*/*/result.json")))
    if n_results < len(trials):
        problems.append(f"{out} has {n_results} result.json file(s) for {len(trials)} trials")
    if facenas_advisor and not (out / "summary.json").is_file():  # other tuners: `facenas nni results` writes it
        problems.append(f"{out}/summary.json was not written")
    if any(addr not in launch.LOOPBACK_HOSTS for addr in result.bound_addresses):
        problems.append(f"the NNI server listened on non-loopback addresses {result.bound_addresses}")
    if result.leftover_processes:
        problems.append(f"processes left behind after nnictl stop (killed now): {result.leftover_processes}")
    return problems


def run_experiment_e2e(
    yml_path: str | Path,
    timeout: float = 600,
    expect_failed: int = 0,
    required_metrics: Sequence[str] | Mapping[str, Sequence[str]] = (),
    min_trials: int = 1,
    overrides: dict[str, Any] | None = None,
    work_dir: str | Path | None = None,
    keep: bool = False,
    stop_grace: float = 30.0,
    done_grace: float = 15.0,
    port: int | None = None,
    output_root: str | Path | None = None,
    poll: float = 0.5,
) -> E2EResult:
    """Run ``yml_path`` with ``nnictl`` end to end and check it (see the module docstring).

    Args:
        yml_path: the experiment file (``recipes/nni/<method>_test.yml``).
        timeout: seconds to wait for the experiment to finish.
        expect_failed: number of trials that must FAIL (injected failures); all others must SUCCEED.
        required_metrics: named metrics every successful trial's final result must carry; or a dict
            from pipeline step name (``"*"``: any other step) to the metrics that step's trials carry.
        min_trials: fewest trials the experiment must run.
        overrides: top-level fields replacing the file's (e.g. ``{"trialConcurrency": 1}``).
        work_dir: temporary NNI home to use (default: a new temp folder, deleted unless ``keep``).
        keep: keep the temp folder (logs, outputs) for inspection.
        stop_grace: seconds ``nnictl stop`` gets to end every process before leftovers are killed.
        done_grace: seconds an experiment whose trials all ended may stay in "no more trial" before
            it counts as finished (the facenas advisors turn it DONE within a second or two).
        port: the portal / REST port (default: a free loopback port).
        output_root: root of the facenas outputs (``--output-root``; required for ``remote``).
        poll: seconds between status polls (the end is seen up to this late).
    """
    started = time.time()
    own_tmp = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="facenas-e2e-")) if own_tmp else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    env = launch.nni_env(home=work / "home", config_dir=work / "nni-config", output_root=output_root)
    port = port or launch.free_port()
    exp_id = None
    info: dict[str, Any] = {}
    status, trials, bound, leftovers = "NOT STARTED", [], [], []
    node_pids: list[int] = []
    timeline: dict[str, float] = {"register": time.time()}
    try:
        launch.register(env)
        timeline["create"] = time.time()
        info = launch.create(yml_path, port=port, env=env, overrides=overrides)
        timeline["created"] = time.time()
        exp_id = info["experiment_id"]
        record = read_manifest(Path(env["HOME"]) / "nni-experiments").get(exp_id, {})
        if record.get("pid"):
            node_pids = [int(record["pid"])]
        client = launch.RestClient(port)
        client.wait_reachable()
        bound = launch.listening_sockets(port)
        deadline = time.time() + timeout
        ended_at = None
        while True:
            status = client.status().get("status", "?")
            trials = client.trials()
            if status in ("ERROR", "DONE", "STOPPED"):
                timeline["ended"] = time.time()
                break
            if _all_ended(status, trials):
                ended_at = ended_at or time.time()
                if time.time() - ended_at > done_grace:  # another tuner: "no more trial" is its end
                    timeline["ended"] = ended_at
                    break
            else:
                ended_at = None
            if time.time() > deadline:
                raise E2EFailure(
                    f"{yml_path}: experiment {exp_id} not done after {timeout} s (status {status}):\n"
                    f"{_describe(trials, Path(info['output_dir']))}\n--- dispatcher.log:\n{_log_tail(work, exp_id, 'dispatcher.log')}"
                )
            time.sleep(poll)
        for t in trials:
            t["intermediates"] = client.intermediates(t["trial_id"])
        if status == "ERROR":
            raise E2EFailure(
                f"{yml_path}: experiment {exp_id} ended in ERROR ({client.status().get('errors')}):\n"
                f"{_describe(trials, Path(info['output_dir']))}\n--- dispatcher.log:\n{_log_tail(work, exp_id, 'dispatcher.log')}"
            )
    finally:
        if exp_id is not None:
            watched = sorted(set(node_pids) | {p for n in node_pids for p in launch.descendants(n)})
            timeline["stop"] = time.time()
            leftovers, stop_error = launch.stop_and_wait(exp_id, watched, env=env, grace=stop_grace, poll=0.5)
            if stop_error:
                log.error("nnictl stop %s failed: %s", exp_id, stop_error)
            timeline["stopped"] = time.time()
            if leftovers:
                launch.terminate(leftovers)
            if launch.listening_sockets(port):
                leftovers = leftovers + [-port]  # something still listens on the port
    summary = summarize(info["output_dir"], exp_id) if info.get("output_dir") and Path(info["output_dir"]).is_dir() else {}
    result = E2EResult(experiment_id=exp_id or "", status=status, trials=trials, summary=summary,
                       output_dir=info.get("output_dir", ""), work_dir=str(work), port=port,
                       duration_s=round(time.time() - started, 1), bound_addresses=bound, leftover_processes=leftovers,
                       timeline=timeline)
    pipeline = pipeline_config_of(launch.load_yaml(yml_path).get("tuner"))
    require_done = pipeline is not None and pipeline.finish_experiment
    problems = _check(result, expect_failed, required_metrics, min_trials, require_done, facenas_advisor=pipeline is not None)
    if problems:
        detail = _describe(trials, Path(result.output_dir))
        msg = (f"{yml_path}: end-to-end check failed (experiment {exp_id}, work dir {work}):\n- " + "\n- ".join(problems)
               + f"\ntrials:\n{detail}\n--- dispatcher.log:\n{_log_tail(work, exp_id or '', 'dispatcher.log')}")
        if own_tmp and not keep:
            keep = True  # keep the evidence
            msg += f"\n(kept {work} for inspection)"
        raise E2EFailure(msg)
    if own_tmp and not keep:
        shutil.rmtree(work, ignore_errors=True)
    log.info("%s: %d trials (%d failed as expected) in %.1f s, experiment %s %s", yml_path, len(trials),
             expect_failed, result.duration_s, exp_id, status)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from facenas.utils.io import emit_json
    from facenas.utils.log import setup_logging

    p = argparse.ArgumentParser(prog="python -m facenas.adapters.nni.e2e", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("yml", help="experiment file, e.g. recipes/nni/toy_test.yml")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--expect-failed", type=int, default=0)
    p.add_argument("--require", action="append", default=[], metavar="METRIC", help="named metric every final result needs")
    p.add_argument("--keep", action="store_true", help="keep the temporary NNI home (logs, outputs)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = p.parse_args(argv)
    setup_logging(0)
    try:
        res = run_experiment_e2e(args.yml, timeout=args.timeout, expect_failed=args.expect_failed,
                                 required_metrics=args.require, keep=args.keep)
    except FacenasError as exc:
        print(f"e2e: {exc}", file=sys.stderr)
        return 1
    if args.json:
        emit_json({k: v for k, v in dataclasses.asdict(res).items() if k != "trials"} | {"trials": [
            {k: t[k] for k in ("trial_id", "status", "final")} for t in res.trials]})
    else:
        print(f"OK: {res.experiment_id} {res.status}, {len(res.trials)} trials, {len(res.failed())} failed, {res.duration_s} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
