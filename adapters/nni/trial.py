"""The facenas NNI trial: ``python -m facenas.adapters.nni.trial`` (the ``trialCommand`` of our experiments).

It takes its parameters from NNI (``nni.get_next_parameter()``), runs the ``STAGES`` entry they
name (a supernet training, a one-shot search, a candidate evaluation, a retrain ...) with an
:class:`~facenas.adapters.nni.reporter.NNIReporter` (per-epoch intermediate results, one final dict
metric with ``default`` plus named metrics) and leaves in its folder:

- ``params.json`` -- the stage, its parameters and the NNI ids of the trial;
- ``metrics.jsonl`` / ``final.json`` -- every reported metric (:class:`LocalReporter` format);
- ``result.json`` -- status (``SUCCEEDED`` / ``FAILED``), final metrics, the stage's full return
  value (artefact paths ...), the architecture description when the trial had a sample, and the
  error with its traceback when it failed;
- whatever the stage writes (checkpoints, architectures ...).

A failing stage makes the process exit with status 1, which NNI records as a FAILED trial; the
facenas advisors then go on with the rest of the experiment.

With a facenas tuner the parameters carry the stage (:mod:`facenas.adapters.nni.envelope`). With any
other NNI tuner over our generated search space, name the stage on the command line::

    trialCommand: python -m facenas.adapters.nni.trial --stage toy.evaluate --space toy --params '{"epochs": 3}'

Outside NNI (debugging) give the parameters yourself::

    python -m facenas.adapters.nni.trial --parameters '{"facenas": {"stage": "toy.evaluate", "params": {}},
        "stem/width": 16, "block/kernel_size": 5, "block/depth": 2, "block/op": "dwconv"}' --output /tmp/t
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

from facenas.adapters.nni import _imports
from facenas.adapters.nni.envelope import TrialSpec, from_parameters
from facenas.errors import FacenasError
from facenas.utils.io import dumps, write_json

log = logging.getLogger("facenas.adapters.nni.trial")

RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
#: seconds a local trial waits for the trial before it (by sequence id) to take its parameters
FETCH_WAIT_ENV = "FACENAS_NNI_FETCH_WAIT"
ORDER_DIR = ".parameter-order"
#: set in a trial that runs as a child of the experiment's warm server (its pid)
WARM_SERVER_ENV = "FACENAS_NNI_WARM_SERVER"
THREADS_ENV = "FACENAS_TRIAL_THREADS"  # = warm.THREADS_ENV (not imported: the trial imports little before its hand-off)


def fetch_parameters_in_order(nni: Any, experiment_output: str | None = None) -> Any:
    """``nni.get_next_parameter()``, taken in sequence-id order on NNI's local training service.

    NNI 3.0's local training service (the v3 compatibility layer) hands queued parameters to
    trials in the order the trial *processes ask*, not to the trial they were created for; when two
    trials start together, each may run the other's parameters while NNI records them the other
    way round (the portal then shows swapped parameters). Asking in creation order avoids it: a
    trial with sequence id ``s`` waits (at most ``$FACENAS_NNI_FETCH_WAIT`` s, default 30) until
    trial ``s - 1`` has taken its parameters, marked by a file in the experiment output folder.
    NNI's ``remote`` service (the same v3 layer) hands parameters out the same way; there the
    markers go to ``experiment_output`` (the shared output folder, ``{experiment_id}`` replaced),
    which ``facenas nni create`` passes on the trial command line (``--experiment-output``).
    Without it other platforms fetch directly (the facenas advisors also cope with swapped
    parameters, see :mod:`facenas.adapters.nni.advisor`).
    """
    from facenas.adapters.nni.paths import output_dir_in_trial

    seq = os.environ.get("NNI_TRIAL_SEQ_ID", "")
    local = os.environ.get("NNI_PLATFORM") == "local"
    if not (local or experiment_output) or not seq.lstrip("-").isdigit() or int(seq) < 0:
        return nni.get_next_parameter()
    if local:
        marker_dir = output_dir_in_trial() / ORDER_DIR
    else:
        marker_dir = Path(str(experiment_output).replace("{experiment_id}", os.environ.get("NNI_EXP_ID", ""))) / ORDER_DIR
    marker_dir.mkdir(parents=True, exist_ok=True)
    previous = marker_dir / str(int(seq) - 1)
    deadline = time.time() + float(os.environ.get(FETCH_WAIT_ENV, "30"))
    if int(seq) > 0:
        while not previous.exists() and time.time() < deadline:
            time.sleep(0.05)
        if not previous.exists():
            log.warning("trial %s: the trial before it never took its parameters; asking anyway", seq)
    try:
        return nni.get_next_parameter()
    finally:
        (marker_dir / seq).touch()


def jsonable(obj: Any) -> Any:
    """``obj`` made JSON-safe (numpy unwrapped, unknown objects as strings, non-finite floats as None)."""

    def fallback(o: Any) -> Any:
        try:
            return json.loads(dumps(o))
        except TypeError:
            return str(o)

    text = json.dumps(obj, default=fallback, allow_nan=True)
    return json.loads(text, parse_constant=lambda _: None)


def _architecture(spec: TrialSpec, result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The architecture description of the trial's network, when it can be told."""
    from facenas.nas.space import ARCH_FORMAT, create_space

    if result and isinstance(result.get("arch"), Mapping) and result["arch"].get("format") == ARCH_FORMAT:
        return dict(result["arch"])  # every stage yielding an architecture (facenas.nas.results)
    sample = spec.params.get("sample")
    if spec.space and isinstance(sample, Mapping):
        space = create_space(spec.space, **(spec.space_config or {}))
        return space.describe(sample)
    if isinstance(sample, Mapping) and isinstance(spec.params.get("arch"), Mapping):
        return dict(spec.params["arch"])
    return None


def _process_record() -> dict[str, Any]:
    from facenas.utils.lock import holder_record

    return {k: v for k, v in holder_record().items() if k in ("pid", "host", "start_ticks", "since")}


class UnreadableInputError(FacenasError):
    """An earlier step's artefact a trial refers to cannot be read on the machine the trial runs on."""


def check_inputs(spec: TrialSpec) -> None:
    """Fail fast, before the stage runs, when an artefact path the trial's parameters refer to
    (``spec.inputs``: ``${teacher.result.output}/last.pt`` ...) is not readable on this machine.

    Trials on NNI's ``remote`` (or any multi-machine) training service read earlier steps' outputs
    by absolute path, so every machine must see the experiment output folder at the same path.
    """
    for path in spec.inputs or ():
        p = Path(path)
        try:
            if p.is_dir():
                next(iter(os.scandir(p)), None)
            else:
                with open(p, "rb") as fh:
                    fh.read(1)
            continue
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
        raise UnreadableInputError(
            f"step '{spec.step}': {path} (an artefact of an earlier step) is not readable on this machine "
            f"({socket.gethostname()}: {reason}); every machine must see the experiment output folder at the same "
            f"absolute path: mount shared storage on all of them (NNI's `sharedStorage` option, or NFS) and give "
            f"that path as the output root (facenas nni create --output-root)"
        )


def run_batch(spec: TrialSpec, nni_info: Mapping[str, Any] | None = None) -> int:
    """Run the units of a batched trial one after another in this process.

    Each unit has its own folder and ``result.json`` (as a one-unit trial); each successful unit's
    final metrics go to NNI as an intermediate result (with ``unit``: its index in the step), and the
    trial's final result is the best unit's (highest ``default``) plus ``units`` and
    ``units_succeeded``. Exit status 0 when at least one unit succeeded.
    """
    import dataclasses

    from facenas.adapters.nni.reporter import nni_metric_dict, portal_metrics
    from facenas.nas.report import LocalReporter

    nni = _imports.nni()
    units = list(spec.batch or [])
    done = []
    for position, member in enumerate(units):
        unit = dataclasses.replace(spec, params=dict(member["params"]), out_dir=member["out_dir"], index=int(member["index"]),
                                   attempt=int(member.get("attempt", 0)), inputs=member.get("inputs"), batch=None)
        info = {**dict(nni_info or {}), "batch": {"position": position, "size": len(units)}}
        run_trial(unit, unit.out_dir, info, reporter_cls=LocalReporter)
        try:
            record = json.loads((Path(unit.out_dir) / RESULT_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            record = {"status": "FAILED"}
        if record.get("status") == "SUCCEEDED":
            metrics = nni_metric_dict(record.get("metrics") or {})
            nni.report_intermediate_result({**metrics, "unit": float(unit.index)})
            done.append(metrics)
    if not done:
        return 1
    best = max(done, key=lambda m: m.get("default", -math.inf))
    nni.report_final_result(portal_metrics({**best, "units": float(len(units)), "units_succeeded": float(len(done))},
                                           spec.step, spec.role))
    return 0


def run_trial(spec: TrialSpec, out_dir: str | os.PathLike, nni_info: Mapping[str, Any] | None = None,
              reporter_cls: type | None = None) -> int:
    """Run one stage with an NNI reporter in ``out_dir``; returns the process exit status.

    A batched trial (``spec.batch``) runs its units with :func:`run_batch`; ``reporter_cls``
    (default :class:`~facenas.adapters.nni.reporter.NNIReporter`) is what a unit reports through.
    """
    from facenas.adapters.nni.reporter import NNIReporter
    from facenas.nas.stages import STAGES

    if spec.batch:
        return run_batch(spec, nni_info)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = dict(nni_info or {})
    record: dict[str, Any] = {
        "stage": spec.stage, "step": spec.step, "index": spec.index, "attempt": spec.attempt,
        "out_dir": str(out), "params": jsonable(spec.params), "nni": info,
        "space": spec.space, "space_config": spec.space_config, "role": spec.role, "inputs": spec.inputs,
        "process": _process_record(),  # lets `facenas nni results` tell a killed trial from a running one
    }
    write_json(out / PARAMS_FILE, record)
    started = time.time()
    # a batched trial's units report locally; the trial reports the best unit (run_batch)
    # NNI gets the final result after result.json is written: the advisor reads it on that signal
    reporter = (reporter_cls(out) if reporter_cls is not None
                else NNIReporter(out, step=spec.step, role=spec.role, defer_final=True))
    send_final = getattr(reporter, "send_final", lambda: None)
    try:
        check_inputs(spec)
        stage = STAGES.get(spec.stage)
        returned = dict(stage(spec.params, reporter) or {})
        if reporter.final_metrics is None:
            reporter.final(returned)
        arch = _architecture(spec, returned)
    except Exception as exc:  # the trial fails, the experiment goes on
        log.error("stage %s failed: %s", spec.stage, exc, exc_info=not isinstance(exc, FacenasError))
        record.update(status="FAILED", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(),
                      metrics=jsonable(reporter.final_metrics), intermediates=len(reporter.intermediates),
                      duration_s=round(time.time() - started, 3))
        write_json(out / RESULT_FILE, record)
        send_final()
        return 1
    record.update(status="SUCCEEDED", metrics=jsonable(reporter.final_metrics), result=jsonable(returned),
                  arch=jsonable(arch), intermediates=len(reporter.intermediates),
                  duration_s=round(time.time() - started, 3))
    write_json(out / RESULT_FILE, record)
    send_final()
    log.info("stage %s done in %.1f s: default=%s", spec.stage, record["duration_s"], reporter.final_metrics.get("default"))
    return 0


def _json_arg(text: str | None, what: str) -> Any:
    if not text:
        return None
    if text.startswith("@"):
        path = text[1:]
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise FacenasError(f"{what}: cannot read {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FacenasError(f"{what}: not valid JSON ({exc}): {text[:200]!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m facenas.adapters.nni.trial", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", help="STAGES entry to run when the parameters carry no facenas envelope")
    p.add_argument("--params", help="stage parameters as JSON (or @file.json); the envelope's take precedence")
    p.add_argument("--space", help="space of the sample (for the architecture description), e.g. toy")
    p.add_argument("--space-config", help="the space's config as JSON (or @file.json)")
    p.add_argument("--parameters", help="run outside NNI with these NNI-style parameters (JSON or @file.json)")
    p.add_argument("--output", help="trial folder (default: from the envelope, else <experiment output>/trials/<trial id>)")
    p.add_argument("--experiment-output", help="the experiment output folder as every machine sees it ({experiment_id} "
                   "replaced; facenas nni create adds it for remote experiments): parameters are taken in trial order")
    return p


def main(argv: Sequence[str] | None = None, warm: bool = True) -> int:
    from facenas.adapters.nni.paths import output_dir_in_trial
    from facenas.utils.log import setup_logging

    if warm:  # NNI local trials run in the experiment's warm server when there is one (adapters/nni/warm.py)
        from facenas.adapters.nni.warm import handoff

        code = handoff([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
        if code is not None:
            return code
    args = build_parser().parse_args(argv)
    setup_logging(0)
    try:
        nni = _imports.nni()
        if args.parameters:
            parameters = _json_arg(args.parameters, "--parameters")
            info: dict[str, Any] = {"standalone": True}
        else:
            parameters = fetch_parameters_in_order(nni, args.experiment_output)
            info = {"experiment_id": nni.get_experiment_id(), "trial_id": nni.get_trial_id(),
                    "sequence_id": nni.get_sequence_id(), "host": socket.gethostname(), "cwd": os.getcwd()}
            if parameters is None:
                raise FacenasError("NNI gave this trial no parameters (is it running under NNI? use --parameters to run it alone)")
        if os.environ.get(WARM_SERVER_ENV):
            info["warm_server"] = int(os.environ[WARM_SERVER_ENV])
        if os.environ.get(THREADS_ENV):  # the warm server gave this trial its share of the cores
            info["threads"] = int(os.environ[THREADS_ENV])
        spec = from_parameters(parameters, stage=args.stage, params=_json_arg(args.params, "--params"),
                               space=args.space, space_config=_json_arg(args.space_config, "--space-config"))
        out_dir = spec.out_dir or args.output
        if not out_dir:
            out_dir = output_dir_in_trial() / "trials" / str(info.get("trial_id") or "standalone")
    except FacenasError as exc:
        print(f"facenas trial: error: {exc}", file=sys.stderr)
        return 2
    return run_trial(spec, out_dir, info)


if __name__ == "__main__":
    sys.exit(main())
