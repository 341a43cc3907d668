"""Record what a pipeline run left in its output folder as ``benchmarks/results/<name>.json``.

    python -m benchmarks.collect_pipeline OUTPUT_DIR --name reference_front_cpu \
        --experiment recipes/nni/reference_front_cpu.yml

Reads only the run's own records (``advisor_state.json`` and each trial's ``result.json``, as
written by ``facenas nni run-local`` or an NNI experiment) and keeps, per trial, its step, stage,
role, status, parameters and final metrics; steps not run yet are listed as pending. Nothing is
re-measured: the numbers are the experiment file's. Machine and versions are this machine's (the
run's own machine is in each trial's ``host``).

Seeds: one record holds every seed run of one experiment file. The run's seed is read from its
``advisor_state.json`` (the pipeline's ``seed``, e.g. ``FACENAS_VAR_SEED=1``), and the run is stored
under ``runs[<seed>]``; collecting another seed's folder under the same ``--name`` adds a run, and
collecting a run again (it progressed) replaces that seed's earlier, partial entry. The record's
``seed``, ``trials`` and ``pending_steps`` repeat its *primary* run (the first seed recorded), so
readers of one run (``benchmarks.bench_ofa``, ``benchmarks.publish_models``) keep working;
:func:`record_runs` gives every run, also of a record written before seeds were kept.

Steps run on their own (``facenas nni run-local FILE --steps STEP --output OUT2``, e.g. a longer-budget
reference after the rest of the run was collected) join that seed's entry with ``--steps STEP``: their
trials are added (or replace that step's), the entry's other trials are kept, and ``merged_steps`` names the
folder each came from. Refused (exit 2) when a step the entry holds used a merged step's results, and when a
run of only some steps is collected without ``--steps`` over an entry holding others' trials.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS_DIR, portable, save_result
from facenas.errors import ConfigError, FacenasError
from facenas.utils.io import read_jsonl

log = logging.getLogger(__name__)

#: per-trial metrics kept in the record (everything else stays in the run's folder)
KEPT = ("lfw_acc", "lfw_acc_std", "lfw_tar_at_far_1e-3", "lfw_auc", "lfw_devtest_auc", "val_acc", "loss", "epochs",
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
        "val_acc", "val_acc_std",
        # several-model timings (runtime.latency ``models``): which networks were untrained architectures; with their
        # ``mflops_<name>`` (KEPT_PREFIXES) the headline pairs a searched network with a reference timed beside it
        "trained")
#: metric names kept by prefix: a several-model timing's per-network MFLOPs
KEPT_PREFIXES = ("mflops_",)
#: per-epoch intermediate results kept (``curve``) for the trials of these stages, by stage: what the portal plots
#: for a search (whether the latency term steered the controller), read from the trial's ``metrics.jsonl``
CURVE_KEYS = {"enas.search": ("epoch", "accuracy", "latency_ms", "greedy_latency_ms", "entropy", "reward")}
#: the key of a run whose seed cannot be read (its folder has no advisor state and its trials no ``seed``)
UNKNOWN_SEED = "unknown"


def _params(params: Any) -> Any:
    """A trial's parameters, with lists of earlier trials' records (``${evaluate[*]}``) kept as their count."""
    if not isinstance(params, dict):
        return params
    return {k: (f"{len(v)} trial records" if isinstance(v, list) and v and isinstance(v[0], dict) and "metrics" in v[0]
                else v) for k, v in params.items()}


def _trials_seed(trials: list[dict[str, Any]]) -> int | None:
    """The one ``seed`` parameter the trials share (None when they name none or several)."""
    seeds = {(t.get("params") or {}).get("seed") for t in trials} - {None}
    return next(iter(seeds)) if len(seeds) == 1 and isinstance(next(iter(seeds)), int) else None


def run_seed(state: dict[str, Any], trials: list[dict[str, Any]]) -> int | None:
    """The run's seed: the pipeline's ``seed`` in its advisor state (``${vars.seed}`` resolved), else its
    ``variables.seed``, else the one ``seed`` parameter its trials share; None when none says."""
    config = state.get("config") or {}
    for value in (config.get("seed"), (config.get("variables") or {}).get("seed")):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return _trials_seed(trials)


def _curve(trial_dir: Path, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The trial's intermediate results (``metrics.jsonl``, as NNI got them), each cut to ``keys``; a line that is
    not JSON (a trial killed mid-write) is left out."""
    return [{k: row[k] for k in keys if k in row} for row in read_jsonl(trial_dir / "metrics.jsonl")
            if isinstance(row, dict) and row.get("type") == "intermediate"]


def collect(output_dir: Path) -> dict[str, Any]:
    """The pipeline run in ``output_dir``: its seed and its trials (finished or not), in step order."""
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
                       "metrics": {k: v for k, v in metrics.items() if k in KEPT or k.startswith(KEPT_PREFIXES)},
                       **({"error": record.get("error")} if record.get("status") == "FAILED" else {}),
                       **({"curve": _curve(result.parent, CURVE_KEYS[record["stage"]])}
                          if record.get("stage") in CURVE_KEYS else {})})
    steps = [s.get("name") for s in (state.get("config") or {}).get("steps", []) if isinstance(s, dict)]
    # the folders list alphabetically (random1_seeds/ before random_retrain/): put the trials in the pipeline's step
    # order, so a network's first seed run is its first step's (readers take it as the primary one)
    trials = _in_step_order(trials, steps)
    return {"pipeline": state.get("name"), "seed": run_seed(state, trials), "trials": trials, "steps": steps,
            "pending_steps": _pending(trials, steps)}


def _in_step_order(trials: list[dict[str, Any]], steps: list[str]) -> list[dict[str, Any]]:
    """``trials`` sorted by their step's place in ``steps`` (unknown steps last, by name), then by index."""
    order = {name: k for k, name in enumerate(steps)}
    return sorted(trials, key=lambda t: (order.get(t.get("step"), len(order)), str(t.get("step")),
                                         t["index"] if isinstance(t.get("index"), int) else -1))


def _pending(trials: list[dict[str, Any]], steps: list[str]) -> list[str]:
    """The steps without a succeeded trial, in order."""
    done = {t.get("step") for t in trials if t.get("status") == "SUCCEEDED"}
    return [s for s in steps if s not in done]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _key(seed: Any) -> str:
    return UNKNOWN_SEED if seed is None else str(seed)


def record_runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every seed run of a pipeline record (the ``result`` part), primary first: ``{"seed", "trials",
    "pending_steps", ...}`` each. A record written before seeds were kept (no ``runs``) is one run, its
    seed the one its trials share."""
    runs = result.get("runs")
    if isinstance(runs, dict) and runs:
        return [dict(run) for run in runs.values()]
    if "trials" not in result:
        return []
    trials = result.get("trials") or []
    return [{"seed": result.get("seed", _trials_seed(trials)), "trials": trials,
             "pending_steps": result.get("pending_steps") or []}]


def merge(previous: dict[str, Any] | None, run: dict[str, Any], experiment_file: str, folder: str,
          experiment_steps: list[str] | None = None) -> dict[str, Any]:
    """The record ``previous`` (its ``result`` part, or None) with ``run`` (:func:`collect`) stored under its
    seed: added, or replacing that seed's earlier entry (a run collected again after it progressed).
    ``experiment_steps``: the experiment file's steps; a run of only some of them (``run-local --steps``) does
    not replace an entry holding others' trials (:func:`merge_steps` adds it to that entry)."""
    previous = previous or {}
    for field, have in (("pipeline", run.get("pipeline")), ("experiment_file", experiment_file)):
        was = previous.get(field)
        if was is not None and have is not None and was != have:
            raise ConfigError(f"the record holds runs of {field} {was!r}, this run is of {have!r}: "
                              "give this run its own --name")
    runs = {_key(r.get("seed")): r for r in record_runs(previous)}
    key = _key(run.get("seed"))
    if key in runs and experiment_steps is not None and run.get("steps") and set(run["steps"]) < set(experiment_steps):
        others = sorted({str(t.get("step")) for t in runs[key].get("trials") or []} - set(run["steps"]))
        if others:  # a run of some steps (run-local --steps) would drop the others' trials from the record
            ended = [s for s in run["steps"] if s not in run["pending_steps"]]
            raise ConfigError(f"{folder}: the run there holds only steps {run['steps']} and seed {key}'s entry also "
                              f"{others}: give --steps with those to merge into it (finished: {ended or 'none yet'})")
    if key == UNKNOWN_SEED and set(runs) - {UNKNOWN_SEED}:
        raise ConfigError(f"{folder}: the run's seed cannot be read (no advisor_state.json seed, no trial 'seed' "
                          f"parameter) and the record already holds seeds {sorted(runs)}: give it its own --name")
    if key in runs:
        log.info("seed %s: replacing the entry collected %s from %s", key, runs[key].get("collected", "earlier"),
                 runs[key].get("folder", "an unnamed folder"))
    runs[key] = {"seed": run.get("seed"), "folder": folder, "collected": _now(),
                 "pending_steps": run["pending_steps"], "trials": run["trials"]}
    return _with_runs(previous, run, experiment_file, runs)


def merge_steps(previous: dict[str, Any] | None, run: dict[str, Any], experiment_file: str, folder: str,
                steps: list[str], experiment: Any, places: dict[str, str] | None = None) -> dict[str, Any]:
    """``previous`` with the trials of ``steps`` taken from ``run`` into its entry of the same seed, the others
    kept: a step run on its own (``run-local --steps``) after the rest of the run was collected. Refused when a
    step the entry holds used one of ``steps``' results (its trials would then describe other networks than the
    merged ones), when a merged step used a step the entry keeps and the run's trials of that step gave other
    results than the entry's (:func:`_check_inputs`), or when the run has no finished trial of a named step.
    ``experiment``: the file's :class:`~facenas.adapters.nni.pipeline.PipelineConfig` (step order, what each step
    uses); ``places``: the run folder's ``{path: name}`` as the record writes it (``$RUN_DIR``)."""
    from facenas.adapters.nni.pipeline import step_uses

    configs = experiment.step_configs(experiment_file)
    order = [c.name for c in configs]
    unknown = [s for s in steps if s not in order]
    if unknown:
        raise ConfigError(f"--steps: {experiment_file} has no step(s) {unknown} (steps: {order})")
    runs = {_key(r.get("seed")): r for r in record_runs(previous or {})}
    key = _key(run.get("seed"))
    if key not in runs:
        raise ConfigError(f"--steps: the record has no run of seed {key} to merge into (seeds: {sorted(runs)}): "
                          "collect the whole run without --steps")
    entry = dict(runs[key])
    held = {str(t.get("step")) for t in entry.get("trials") or []} - set(steps)
    users = sorted((c.name, sorted(step_uses(c) & set(steps))) for c in configs
                   if c.name in held and step_uses(c) & set(steps))
    if users:
        raise ConfigError(f"--steps: seed {key}'s entry holds {[u[0] for u in users]}, which used the results of "
                          f"{sorted({n for u in users for n in u[1]})} from another run: merge them too, or collect "
                          "the whole run without --steps")
    ended = {str(t.get("step")) for t in run["trials"] if t.get("status") in ("SUCCEEDED", "FAILED")}
    missing = [s for s in steps if s not in ended]
    if missing:
        raise ConfigError(f"--steps: {folder} has no finished trial of {missing}: let them end first")
    _check_inputs(entry, run, configs, steps, folder, places)
    trials = _in_step_order([t for t in entry.get("trials") or [] if t.get("step") not in steps]
                           + [t for t in run["trials"] if t.get("step") in steps], order)
    stamp = _now()
    entry.update(trials=trials, pending_steps=_pending(trials, order),
                 merged_steps={**(entry.get("merged_steps") or {}),
                               **{s: {"folder": folder, "collected": stamp} for s in steps}})
    log.info("seed %s: steps %s merged from %s; the entry's other steps kept (collected %s from %s)", key, steps,
             folder, entry.get("collected", "earlier"), entry.get("folder", "an unnamed folder"))
    runs[key] = entry
    return _with_runs(previous or {}, run, experiment_file, runs)


def _outcome(trial: dict[str, Any]) -> dict[str, Any]:
    """What a trial gave the steps after it: status, architecture and metrics, without how long it took
    (``*_seconds``: a repeated run differs there and nowhere else when it reproduces)."""
    metrics = {k: v for k, v in (trial.get("metrics") or {}).items() if not k.endswith("_seconds")}
    return {"index": trial.get("index"), "status": trial.get("status"), "arch": trial.get("arch"), "metrics": metrics}


def _check_inputs(entry: dict[str, Any], run: dict[str, Any], configs: list[Any], steps: list[str], folder: str,
                  places: dict[str, str] | None) -> None:
    """A merged step that used a step the entry keeps describes the run's results of that step: refused unless the
    run's trials of it equal the entry's (a deterministic step run again, e.g. a training from the same seed, gives
    the same numbers; a measurement does not)."""
    from facenas.adapters.nni.pipeline import step_uses

    by_step = lambda trials, name: [t for t in trials if t.get("step") == name]  # noqa: E731
    for config in configs:
        if config.name not in steps:
            continue
        for used in sorted(step_uses(config) - set(steps)):
            kept = [_outcome(t) for t in by_step(entry.get("trials") or [], used)]
            if not kept:
                continue  # not a step of the entry (a context name, or a step the entry never ran)
            # the run's paths as the record (already written that way) names them
            ran = portable([_outcome(t) for t in by_step(run["trials"], used)], places)
            if ran != kept:
                diff = next((f"trial {a.get('index')}: {_first_difference(a, b)}" for a, b in zip(ran, kept) if a != b),
                            f"{len(ran)} trial(s) against {len(kept)}")
                raise ConfigError(f"--steps: {config.name} used {used}, which the entry keeps from another run, and "
                                  f"{folder}'s {used} gave other results ({diff}): merge {used} too, or collect the "
                                  "whole run without --steps")


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """Where two outcomes first differ, as ``path: this run's value vs the entry's``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
    return f"{path or 'value'}: {str(a)[:80]} vs {str(b)[:80]}"


def _with_runs(previous: dict[str, Any], run: dict[str, Any], experiment_file: str,
               runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The record's ``result`` over ``runs``: its top level repeats the primary (first) run."""
    primary = runs[next(iter(runs))]
    return {"pipeline": previous.get("pipeline") or run.get("pipeline"), "experiment_file": experiment_file,
            "seed": primary["seed"], "seeds": [r["seed"] for r in runs.values()],
            "trials": primary["trials"], "pending_steps": primary["pending_steps"], "runs": runs}


def _experiment(path: str) -> Any:
    """The experiment file's pipeline (:class:`~facenas.adapters.nni.pipeline.PipelineConfig`); None when the file
    is not there or not a facenas pipeline (the record then only names it)."""
    from facenas.adapters.nni.launch import load_yaml
    from facenas.adapters.nni.pipeline import pipeline_config_of

    if not Path(path).is_file():
        return None
    return pipeline_config_of(load_yaml(path).get("tuner"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output_dir", type=Path, help="the run's output folder (facenas nni run-local --output)")
    ap.add_argument("--name", required=True, help="record name: benchmarks/results/<name>.json")
    ap.add_argument("--experiment", required=True, help="the experiment file the run came from")
    ap.add_argument("--steps", metavar="STEP[,STEP...]",
                    help="merge only these steps' trials into the record's entry of the run's seed, keeping its other "
                         "steps (a step run on its own: facenas nni run-local --steps)")
    ap.add_argument("--results", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if not (args.output_dir / "advisor_state.json").is_file() and not list(args.output_dir.glob("*/*/result.json")):
            raise FacenasError(f"{args.output_dir}: no advisor_state.json and no trial result.json: not the --output "
                               "folder of a pipeline run")
        existing = args.results / f"{args.name}.json"
        previous = json.loads(existing.read_text(encoding="utf-8")).get("result") if existing.is_file() else None
        experiment = _experiment(args.experiment)
        run, folder = collect(args.output_dir), args.output_dir.resolve().name
        places = {str(args.output_dir.resolve()): "$RUN_DIR"}  # the run folder as the record names it
        if args.steps:
            if experiment is None:
                raise ConfigError(f"--steps: {args.experiment} is not a facenas experiment file here: it names the "
                                  "steps' order and what each uses")
            steps = [s.strip() for s in args.steps.split(",") if s.strip()]
            result = merge_steps(previous, run, args.experiment, folder, steps, experiment, places)
        else:
            result = merge(previous, run, args.experiment, folder,
                           [c.name for c in experiment.step_configs(args.experiment)] if experiment else None)
    except FacenasError as exc:
        print(f"collect_pipeline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    save_result(args.name, result, out_dir=args.results, places=places)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
