"""``facenas nni ...``: run facenas searches as NNI experiments (portal kept on loopback).

    facenas nni register                                 # register the facenas advisors with NNI (idempotent)
    facenas nni create recipes/nni/toy_test.yml --port 8080 [--wait]   # --wait: until it ends, then its summary
    facenas nni results EXPERIMENT_ID_or_DIR [--json]    # summary table, best architectures
    facenas nni space toy [--output recipes/nni/spaces/toy.json]
    facenas nni stop|resume|view EXPERIMENT_ID [--port 8080]
    facenas nni run-local recipes/nni/toy_test.yml --output /tmp/run   # the pipeline without NNI
    facenas nni e2e recipes/nni/toy_test.yml --expect-failed 1          # the end-to-end check
    facenas nni check recipes/nni/ofa_gpu.yml           # validate a file (schema, stages, spaces, recipes, references)

``create`` wraps ``nnictl create``: it makes the NNI web server bind 127.0.0.1 (NNI's default is
every interface; ``--bind-host`` / ``$FACENAS_NNI_BIND_HOST`` choose another), generates the
search space shown in the portal from the space the pipeline samples, validates the pipeline
before starting, and prints the portal URL. See docs/nni.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from facenas.errors import ConfigError, FacenasError


def _env(args: argparse.Namespace) -> dict[str, str]:
    from facenas.adapters.nni.launch import nni_env

    return nni_env(output_root=getattr(args, "output_root", None), bind_host=getattr(args, "bind_host", None))


#: environment variables that tell nnictl where an experiment lives (its home, its config folder)
LOCATION_ENV = ("HOME", "NNI_CONFIG_DIR")


def command_with_env(command: str, environ: Any = None) -> str:
    """``command`` prefixed with the ``HOME`` / ``NNI_CONFIG_DIR`` it needs to find the experiment.

    An experiment created with another NNI home (``facenas demo`` uses ``WORK/nni-home`` and
    ``WORK/nni-config``) is unknown to an ``nnictl`` run with the user's own, so a command printed
    for later carries the environment it was run in.
    """
    import shlex

    env = os.environ if environ is None else environ
    prefix = [f"{k}={shlex.quote(str(Path(env[k]).resolve()))}" for k in LOCATION_ENV if env.get(k)]
    return " ".join([*prefix, command])


def _emit(args: argparse.Namespace, obj: Any, text: str) -> None:
    from facenas.utils.io import emit_json

    if getattr(args, "json", False):
        emit_json(obj)
    else:
        print(text)


def cmd_register(args: argparse.Namespace) -> int:
    from facenas.adapters.nni.launch import nni_config_dir, register
    from facenas.adapters.nni.pipeline import ALGORITHMS

    env = _env(args)
    done = register(env, force=args.force)
    names = [a["builtinName"] for a in ALGORITHMS]
    where = str(nni_config_dir(env))
    msg = (f"registered {', '.join(done)}" if done else f"already registered: {', '.join(names)}") + f" (in {where})"
    _emit(args, {"registered": done, "algorithms": names, "config_dir": where}, msg)
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    import time

    from facenas.adapters.nni import launch

    started = time.time()
    env = _env(args)
    overrides = {"experimentWorkingDirectory": str(Path(args.experiment_dir).resolve())} if args.experiment_dir else None
    # validated before anything starts (one line for a bad file); the advisors registered if they are not
    info = launch.create(args.config, port=args.port, env=env, overrides=overrides, debug=args.debug,
                         register_algorithms=True)
    text = (f"experiment {info['experiment_id']} started\n"
            f"  portal:  {info['url']}   (bound to {launch.bind_host(env)} only; from elsewhere use an SSH tunnel, see docs/nni.md)\n"
            f"  outputs: {info['output_dir']}\n"
            f"  results: {command_with_env('facenas nni results ' + info['experiment_id'])}\n"
            f"  stop:    {command_with_env('facenas nni stop ' + info['experiment_id'])}")
    if not args.wait:
        _emit(args, info, text)
        return 0
    print(text, file=sys.stderr, flush=True)  # the portal is up meanwhile
    host = launch.bind_host(env)
    status = launch.wait_done(args.port, timeout=args.timeout, host=host if host in launch.LOOPBACK_HOSTS else "127.0.0.1")
    info.update(status=status, seconds=round(time.time() - started, 3))
    info["timeline"] = {**info.get("timeline", {}), "command_start": started, "end_seen": time.time()}
    summary = Path(info["output_dir"]) / "summary.md"
    _emit(args, info, (summary.read_text(encoding="utf-8").rstrip() + "\n" if summary.is_file() else "")
          + f"experiment {info['experiment_id']} {status} after {info['seconds']:.1f} s "
            f"(the portal stays up: {command_with_env('facenas nni stop ' + info['experiment_id'])})")
    return 0 if status == "DONE" else 1


def cmd_results(args: argparse.Namespace) -> int:
    from facenas.adapters.nni.paths import find_experiment_output
    from facenas.adapters.nni.results import check_columns, format_summary, write_summary

    experiment_id, experiment_dir = args.experiment_id, args.experiment_dir
    if experiment_dir is None and Path(experiment_id).expanduser().is_dir():
        # a folder instead of an id: an experiment output folder (or NNI's folder of the experiment,
        # or a `run-local --output` folder); the id then comes from the advisor state, if any
        experiment_id, experiment_dir = Path(experiment_id).expanduser().resolve().name, Path(experiment_id).expanduser()
        if experiment_id == "facenas":
            experiment_id = experiment_dir.resolve().parent.name
        out = find_experiment_output(experiment_id, experiment_dir)
        summary = write_summary(out)
    else:
        out = find_experiment_output(experiment_id, experiment_dir)
        summary = write_summary(out, experiment_id)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    if columns is not None:
        check_columns(summary, columns)
    _emit(args, summary, format_summary(summary, columns).rstrip())
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    from facenas.adapters.nni.space import search_space_json
    from facenas.utils.io import write_json

    config = json.loads(args.config) if args.config else {}
    space = search_space_json(args.name, config)
    if args.output:
        write_json(args.output, space)
    if args.json or not args.output:
        print(json.dumps(space, indent=None if args.json else 2))
    else:
        print(f"wrote {args.output} ({len(space)} choices)")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from facenas.adapters.nni.launch import stop

    stop(args.experiment_id, env=_env(args))
    _emit(args, {"stopped": args.experiment_id}, f"experiment {args.experiment_id} stopped")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from facenas.adapters.nni.launch import register, resume

    env = _env(args)
    register(env)
    url = resume(args.experiment_id, port=args.port, env=env)
    _emit(args, {"experiment_id": args.experiment_id, "url": url}, f"experiment {args.experiment_id} resumed: {url}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from facenas.adapters.nni.launch import view

    url = view(args.experiment_id, port=args.port, env=_env(args))
    _emit(args, {"experiment_id": args.experiment_id, "url": url},
          f"experiment {args.experiment_id} (read-only): {url}   stop with: "
          + command_with_env(f"facenas nni stop {args.experiment_id}"))
    return 0


def _concurrency(given: str, cfg: dict[str, Any], path: str) -> int:
    """``--concurrency``: a count, or ``file`` for the experiment file's ``trialConcurrency``."""
    value = cfg.get("trialConcurrency", 1) if given == "file" else given
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        where = f"{path}: trialConcurrency" if given == "file" else "--concurrency"
        raise ConfigError(f"{where} = {value!r}: give a whole number >= 1 (or --concurrency file for the "
                          "experiment file's trialConcurrency)")
    return n


def cmd_run_local(args: argparse.Namespace) -> int:
    from facenas.adapters.nni.launch import load_yaml
    from facenas.adapters.nni.pipeline import pipeline_config_of, run_pipeline_locally
    from facenas.adapters.nni.results import SUMMARY_MD

    cfg = load_yaml(args.config)
    pipeline = pipeline_config_of(cfg.get("tuner"))
    if pipeline is None:
        raise FacenasError(f"{args.config}: its tuner is not a facenas advisor (FacenasPipeline / FacenasSearch)")
    concurrency = _concurrency(args.concurrency, cfg, args.config)
    if args.steps:
        pipeline = _selected(pipeline, args.steps, args.config, Path(args.output))
    sched = run_pipeline_locally(pipeline, args.output, retry_failed=args.retry_failed, concurrency=concurrency)
    out = Path(args.output)
    _emit(args, {"status": sched.status(), "output_dir": str(out)},
          (out / SUMMARY_MD).read_text(encoding="utf-8").rstrip())
    return 0


def _selected(pipeline: Any, steps: str, path: str, output: Path) -> Any:
    """The pipeline cut to ``--steps``; refused when ``output`` holds a run of steps outside them (resuming it with
    fewer steps would move their trials out of the run)."""
    from facenas.adapters.nni.pipeline import select_steps
    from facenas.utils.io import read_json

    cut = select_steps(pipeline, steps.split(","), source=f"{path}: --steps {steps}")
    state = output / "advisor_state.json"
    if state.is_file():
        saved = [s.get("name") for s in read_json(state).get("steps", []) if isinstance(s, dict)]
        chosen = {s["name"] for s in cut.steps}
        beyond = [n for n in saved if n not in chosen]
        if beyond:
            raise ConfigError(f"{state}: the run there also holds steps {beyond}, which --steps {steps} leaves out "
                              f"(its trials would be moved out of the run): resume it with --steps "
                              f"{','.join(saved)} or more, or without --steps")
    return cut


def cmd_e2e(args: argparse.Namespace) -> int:
    from facenas.adapters.nni.e2e import run_experiment_e2e

    res = run_experiment_e2e(args.config, timeout=args.timeout, expect_failed=args.expect_failed,
                             required_metrics=args.require, keep=args.keep)
    _emit(args, {"experiment_id": res.experiment_id, "status": res.status, "trials": len(res.trials),
                 "failed": len(res.failed()), "duration_s": res.duration_s, "output_dir": res.output_dir},
          f"OK: experiment {res.experiment_id} {res.status}: {len(res.trials)} trials, {len(res.failed())} failed "
          f"as expected, {res.duration_s} s, no process left")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from facenas.adapters.nni.check import CheckFailed, check_experiment_file

    reports = [check_experiment_file(path) for path in args.config]
    problems = [line for report in reports for line in report.problems]
    if args.json:
        _emit(args, [{"file": r.path, "ok": r.ok, "steps": r.steps, "problems": r.problems} for r in reports], "")
    if problems:
        raise CheckFailed("\n".join(problems))
    if not args.json:
        for report in reports:
            print(f"OK: {report.path}: {len(report.steps)} step(s): {', '.join(report.steps) or 'NNI tuner'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("nni", help="run searches as NNI experiments (register, create, results, space ...)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="nni_command", metavar="ACTION")

    def add(name: str, fn, help_text: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--json", action="store_true", help="print the result as one JSON line")
        q.set_defaults(handler=fn)
        return q

    q = add("register", cmd_register, "register the facenas advisors with NNI (wraps nnictl algo register --meta)")
    q.add_argument("--force", action="store_true", help="register again even if already registered")

    q = add("create", cmd_create, "start an experiment from a facenas experiment file, portal on loopback")
    q.add_argument("config", help="experiment file, e.g. recipes/nni/toy_test.yml")
    q.add_argument("--port", type=int, default=8080, help="portal / REST port (default 8080)")
    q.add_argument("--experiment-dir", help="NNI experiment working directory (default ~/nni-experiments)")
    q.add_argument("--output-root", help="root of facenas outputs (default <experiment dir>/<id>/facenas)")
    q.add_argument("--bind-host", help="interface the NNI server binds (default 127.0.0.1)")
    q.add_argument("--debug", action="store_true", help="NNI debug logging")
    q.add_argument("--wait", action="store_true",
                   help="return when the experiment has ended (exit 0 when DONE), printing its summary")
    q.add_argument("--timeout", type=float, default=86400, help="with --wait: longest wait in seconds (default a day)")

    q = add("results", cmd_results, "print (and refresh) an experiment's summary and best architectures")
    q.add_argument("experiment_id", metavar="EXPERIMENT_ID_or_DIR",
                   help="an experiment id (found through NNI's manifest) or its output folder")
    q.add_argument("--experiment-dir", help="the experiment's output folder or NNI working directory")
    q.add_argument("--output-root", help=argparse.SUPPRESS)
    q.add_argument("--columns", help="named metrics the trial table shows, comma-separated (e.g. lfw_acc,latency_ms); "
                                     "default: the verification, latency_ms, mflops and params_m metrics reported")

    q = add("space", cmd_space, "print a space as an NNI search-space JSON (choice format)")
    q.add_argument("name", help="registered search space, e.g. toy")
    q.add_argument("--config", help="the space's config as JSON")
    q.add_argument("--output", help="write the JSON to this file")

    for name, fn, text in (("stop", cmd_stop, "stop an experiment (nnictl stop)"),
                           ("resume", cmd_resume, "resume a stopped experiment, portal on loopback (nnictl resume)"),
                           ("view", cmd_view, "open a stopped experiment read-only, portal on loopback (nnictl view)")):
        q = add(name, fn, text)
        q.add_argument("experiment_id")
        if name != "stop":
            q.add_argument("--port", type=int, default=8080)
            q.add_argument("--bind-host", help="interface the NNI server binds (default 127.0.0.1)")

    q = add("run-local", cmd_run_local, "run an experiment file's pipeline on this machine without NNI")
    q.add_argument("config")
    q.add_argument("--output", required=True, help="output folder")
    q.add_argument("--retry-failed", action="store_true",
                   help="resuming: run the failed trials of finished steps again first (steps no started step "
                        "has used the results of)")
    q.add_argument("--concurrency", default="1", metavar="N|file",
                   help="trials at a time, each in its own process (default 1: one after another in this process); "
                        "'file': the experiment file's trialConcurrency")
    q.add_argument("--steps", metavar="STEP[,STEP...]",
                   help="run only these steps of the file (each may use only these steps' results), e.g. a "
                        "longer-budget reference on its own; a later run of the whole file in the same --output "
                        "keeps their trials")

    q = add("e2e", cmd_e2e, "the end-to-end nnictl check of an experiment file (temporary NNI home)")
    q.add_argument("config")
    q.add_argument("--timeout", type=float, default=600)
    q.add_argument("--expect-failed", type=int, default=0, help="number of trials that must fail (injected)")
    q.add_argument("--require", action="append", default=[], metavar="METRIC", help="named metric every final result needs")
    q.add_argument("--keep", action="store_true", help="keep the temporary NNI home")

    q = add("check", cmd_check, "validate experiment files without running anything (exit 2, one line a problem)")
    q.add_argument("config", nargs="+", help="experiment file(s), e.g. recipes/nni/*_gpu.yml")

    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])
