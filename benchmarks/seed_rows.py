"""Rows of the seed-level comparisons: one per trained network per seed run, read from pipeline records.

A row (:class:`SeedRow`) is what the headline comparison and the reference-front table are built
from: ``{name, method, role (reference | searched), target_runtime, seed, lfw_acc, latency_ms
{onnxruntime, tflite}, mflops, budget, device, record}``. :func:`gather_rows` reads them from the
records listed in :data:`ROW_SOURCES` (``benchmarks/results/<record>.json``, written by
``benchmarks.collect_pipeline``, every seed run of each); :func:`networks` groups a network's rows
over seeds. Nothing is measured here and nothing is filled in: a network without a latency trial has
no latency.

A network is (record, step[, the foreach item other than the seed]): the trials of one step whose
parameters differ only in ``seed`` are one network's seed runs -- a ``foreach`` over fine-tuning seeds
(ofa_cpu.yml) or over target x seed (tnas_cpu.yml) -- and a row's seed is its trial's ``params.seed``
(else the run's seed: the reference front's per-run seeds). A source may name its networks and pair
them with its own references (:class:`RowSource` ``label`` / ``pair``: TNAS's FLOPs target, ENAS's
matched random arc); the headline shows that pairing as the method's own comparison.

A row names the trials behind it (its run, step and index, and the ``runtime.latency`` trial that timed it):
:func:`row_trials` gives them back, so a reader of one network's trials (``benchmarks.publish_models``) finds
them through these rows and groups, not a grouping of its own.
"""
from __future__ import annotations

import dataclasses
import json
import re
import statistics
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from benchmarks.collect_pipeline import record_runs
from benchmarks.seed_stats import SeedStats, seed_stats

#: the runtimes a row has a latency for
RUNTIMES = ("onnxruntime", "tflite")
RUN_DIR = "$RUN_DIR"
ROLES = ("reference", "searched")
#: a pipeline trial's role (adapters/nni/envelope.py) -> a row's role; auxiliary trials make no row
PIPELINE_ROLES = {"reference": "reference", "candidate": "searched"}
#: a source's per-trial hook: ``(trial, the succeeded trials of its run) -> value``
Hook = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]]], Any]


@dataclasses.dataclass(frozen=True)
class SeedRow:
    """One trained network of one seed run."""

    name: str  # the pipeline step (``step/index`` when the step trained several networks)
    method: str  # hand-designed | ofa | tnas | enas
    role: str  # reference | searched
    target_runtime: str | None  # the runtime a searched network was searched for (None: references)
    seed: int | None
    lfw_acc: float
    lfw_acc_std: float | None  # the 10-fold std of this seed's accuracy
    latency_ms: dict[str, float | None]  # {runtime: ms}, batch 1, as the run's runtime.latency trial measured it
    mflops: float | None
    params_m: float | None
    budget: str  # what the network's training cost, as the record states it
    device: str  # where it was trained (host, threads or device) and timed
    record: str  # benchmarks/results/<record>.json
    network: str  # a readable description (recipe and its network arguments)
    step: str = ""  # the pipeline step that trained it
    pair: str | None = None  # the key pairing it with its record's other side in the method's own comparison
    index: int | None = None  # its trial's index in the step (the step's n-th network / foreach item)
    run: int = 0  # the seed run it is of: its position in the record (0: the primary run, the record's ``trials``)
    #: the ``runtime.latency`` trial that timed it: (step, index, its name in ``params.models`` or None when it
    #: timed the network alone); None when no such trial is recorded
    timed_by: tuple[str, int | None, str | None] | None = None
    #: every ``runtime.latency`` trial that timed it among several networks (``params.models``), in the same
    #: interleaved rounds: ``{"step/index": {"name": its name there, "latency_ms": {runtime: ms}, "others": {name:
    #: {"latency_ms": {runtime: ms}, "mflops": float | None, "trained": bool | None}}}}``
    timed_beside: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RowSource:
    """A pipeline record whose trials give rows.

    ``role``: every row's role (the reference front's trials are pipeline ``candidate`` steps but are
    all references); None: each trial's pipeline role (``reference`` -> reference, ``candidate`` ->
    searched, ``auxiliary`` -> no row). ``steps``: the steps that give rows (None: every non-auxiliary
    trial with an ``lfw_acc``). ``target_runtime``: ``{step: runtime}`` for searched steps whose trials
    do not carry a ``target_runtime`` parameter.
    """

    record: str
    method: str
    role: str | None = None
    steps: tuple[str, ...] | None = None
    target_runtime: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: records whose references this source's searched networks are compared with on each runtime
    compare_with: tuple[str, ...] = ("reference_front_cpu",)
    #: whether the references of their own record join them there (OFA's equal-budget MobileFaceNet); False
    #: where the record's references are the other side of the method's own comparison (``pair``) instead
    own_references: bool = True
    #: ``(trial, succeeded trials of its run) -> name`` of the trial's network (None: the default naming)
    label: Hook | None = None
    #: ``(trial, succeeded trials) -> key``: searched and reference networks of this record with the same key
    #: are the method's own comparison (``pair_title`` says what it is)
    pair: Hook | None = None
    pair_title: str = ""
    #: ``(trial, succeeded trials) -> budget`` (None: :func:`_budget`)
    budget: Hook | None = None
    #: the accuracy a row reads: ``lfw_acc`` (lfw.bin, the protocol's test set); a test-scale run's ``val_acc``
    metric: str = "lfw_acc"


#: records of searched networks the headline section expects (named when missing)
SEARCH_RECORDS = ("ofa_cpu", "tnas_cpu", "enas_cpu")


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _latency(metrics: Mapping[str, Any], name: str | None = None) -> dict[str, float | None]:
    """``{runtime: ms}`` of a runtime.latency trial's metrics (``name``: one network of a several-model trial)."""
    lat = metrics.get("latency_ms")
    if name is not None:
        lat = lat.get(name) if isinstance(lat, dict) else None
    if isinstance(lat, dict):
        return {rt: _num(lat.get(rt)) for rt in RUNTIMES}
    if name is None and any(f"latency_{rt}_ms" in metrics for rt in RUNTIMES):
        return {rt: _num(metrics.get(f"latency_{rt}_ms")) for rt in RUNTIMES}
    return {rt: None for rt in RUNTIMES}


def _folder(trial: Mapping[str, Any]) -> str:
    """``$RUN_DIR/<step>/<index>/``: where a trial's checkpoints are, as later trials' parameters name them."""
    index = trial.get("index")
    return f"{RUN_DIR}/{trial.get('step')}/" + (f"{index:03d}/" if isinstance(index, int) else "")


def _timing(trial: Mapping[str, Any], done: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any] | None, str | None]:
    """The runtime.latency trial that timed ``trial``'s checkpoint (one under ``$RUN_DIR/<step>/<index>/``): one
    timing it alone (``params.model``; name None), else one timing it among several (``params.models``: with
    its name there); ``(None, None)`` when none did."""
    prefix = _folder(trial)
    latency = [t for t in done if t.get("stage") == "runtime.latency"]
    for t in latency:
        if str((t.get("params") or {}).get("model", "")).startswith(prefix):
            return t, None
    for t in latency:
        models = (t.get("params") or {}).get("models")
        for name, path in (models.items() if isinstance(models, dict) else ()):
            if str(path).startswith(prefix):
                return t, str(name)
    return None, None


def _timed(trial: Mapping[str, Any], done: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float | None], str | None]:
    """The latency of ``trial``'s network and the CPU it was timed on: the runtime.latency trial that timed it
    (:func:`_timing`), else the trial's own ``latency_ms``."""
    timer, name = _timing(trial, done)
    if timer is not None:
        return _latency(timer.get("metrics") or {}, name), _cpu(timer)
    own = (trial.get("metrics") or {}).get("latency_ms")
    if isinstance(own, dict):
        return _latency(trial.get("metrics") or {}), None
    asked = (trial.get("params") or {}).get("latency")
    timed_in = asked.get("runtime") if isinstance(asked, dict) else None
    if _num(own) is not None and timed_in in RUNTIMES:  # one runtime, e.g. ofa.finetune's latency: {runtime: ...}
        return {rt: float(own) if rt == timed_in else None for rt in RUNTIMES}, None
    return {rt: None for rt in RUNTIMES}, None


def _beside(trial: Mapping[str, Any], done: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The several-model runtime.latency trials that timed ``trial``'s checkpoint, with what they timed beside it."""
    prefix = _folder(trial)
    out = {}
    for t in done:
        models = (t.get("params") or {}).get("models") if t.get("stage") == "runtime.latency" else None
        mine = [str(k) for k, path in (models.items() if isinstance(models, dict) else ()) if str(path).startswith(prefix)]
        if not mine:
            continue
        m = t.get("metrics") or {}
        lat, trained = m.get("latency_ms"), m.get("trained")
        others = {str(k): {"latency_ms": _latency(m, str(k)), "mflops": _num(m.get(f"mflops_{k}")),
                           "trained": trained.get(k) if isinstance(trained, dict) else None}
                  for k in (lat if isinstance(lat, dict) else {}) if str(k) != mine[0]}
        out[f"{t.get('step')}/{t.get('index')}"] = {"name": mine[0], "latency_ms": _latency(m, mine[0]), "others": others}
    return out


def trial_latency(trial: Mapping[str, Any], done: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """``{runtime: ms}`` of the network ``trial`` trained, as its run timed it (``done``: the run's succeeded
    trials): the runtime.latency trial that timed its checkpoint, else the trial's own ``latency_ms`` dict."""
    return _timed(trial, done)[0]


def latency_over_seeds(latencies: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """One network's latency over its seed runs, per runtime: the median of the runs' measurements (None where none
    was measured). The one definition: the headline (:func:`networks`), TNAS's table (bench_tnas_table3) and the
    published manifest's ``seeds`` read it."""
    out: dict[str, float | None] = {}
    for rt in RUNTIMES:
        vals = [float(v) for v in (lat.get(rt) for lat in latencies) if _num(v) is not None]
        out[rt] = statistics.median(vals) if vals else None
    return out


def _cpu(trial: Mapping[str, Any]) -> str | None:
    device = (trial.get("metrics") or {}).get("device")
    return device.get("cpu") if isinstance(device, dict) else device if isinstance(device, str) else None


def _recipe(trial: Mapping[str, Any]) -> str:
    """The trial's training recipe: its ``config`` file's name, an inline config's network, else its stage."""
    config = (trial.get("params") or {}).get("config")
    if isinstance(config, str) and config:
        return Path(config).stem
    if isinstance(config, dict) and isinstance(config.get("network"), str):
        return f"{config['network']} (inline config)"
    return str(trial.get("stage"))


def _budget(trial: Mapping[str, Any]) -> str:
    """The trial's stated budget (a ``budget`` parameter or metric), else its epochs and recipe."""
    m, p = trial.get("metrics") or {}, trial.get("params") or {}
    for stated in (p.get("budget"), m.get("budget")):
        if isinstance(stated, str):
            return stated
    recipe = _recipe(trial)
    epochs = _num(m.get("epochs"))
    return f"{epochs:g} epochs of {recipe}" if epochs is not None else str(recipe)


def _device(trial: Mapping[str, Any], timed_on: str | None) -> str:
    p, m = trial.get("params") or {}, trial.get("metrics") or {}
    where = p.get("device") or (m.get("device") if isinstance(m.get("device"), str) else None)
    if where is None:
        where = f"{p['threads']} CPU thread(s)" if p.get("threads") else "its recipe's device"
    out = f"trained on {trial.get('host') or '?'} ({where})"
    return out + (f"; timed on {timed_on}" if timed_on else "")


def _network(trial: Mapping[str, Any]) -> str:
    p = trial.get("params") or {}
    recipe = _recipe(trial)
    kwargs = p.get("network_kwargs")
    return f"{recipe} {json.dumps(kwargs)}" if kwargs else recipe


def _trial_seed(trial: Mapping[str, Any], run: Mapping[str, Any]) -> Any:
    """The trial's own seed (``params.seed``, or its config's), else its run's (a per-run seed)."""
    p = trial.get("params") or {}
    config = p.get("config") if isinstance(p.get("config"), dict) else {}
    for seed in (p.get("seed"), config.get("seed")):
        if isinstance(seed, int) and not isinstance(seed, bool):
            return seed
    return run.get("seed")


def _identity(trial: Mapping[str, Any]) -> str:
    """The trial's parameters without its seed: the same for every seed run of one network."""
    p = dict(trial.get("params") or {})
    p.pop("seed", None)
    if isinstance(p.get("config"), dict):
        p["config"] = {k: v for k, v in p["config"].items() if k != "seed"}
    return json.dumps(p, sort_keys=True, default=str)


_TRIAL_PATH = re.compile(r"^\$RUN_DIR/([^/]+)/(\d+)/")


def _shown(value: Any) -> str | None:
    """A parameter value as a network name shows it: a scalar, or the trial a ``$RUN_DIR`` path is of."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, str):
        m = _TRIAL_PATH.match(value)
        return f"{m.group(1)}[{int(m.group(2))}]" if m else (value if len(value) <= 24 and "/" not in value else None)
    return None


def _step_names(step: str, trials: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``{identity: name}`` of a step's networks: the step itself when it trained one network (over any number
    of seeds), else ``step (param value, ...)`` from the scalar parameters telling them apart, else
    ``step/<first trial index>``."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for t in trials:
        groups.setdefault(_identity(t), []).append(t)
    if len(groups) == 1:
        return {next(iter(groups)): step}
    firsts = {k: g[0].get("params") or {} for k, g in groups.items()}
    keys = sorted({k for p in firsts.values() for k in p} - {"seed"})
    differ = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True, default=str) for p in firsts.values()}) > 1]
    names = {}
    for ident, p in firsts.items():
        parts = [f"{k} {_shown(p.get(k))}" for k in differ if _shown(p.get(k)) is not None]
        names[ident] = f"{step} ({', '.join(parts)})" if parts else ""
    if "" in names.values() or len(set(names.values())) < len(names):
        names = {ident: f"{step}/{g[0].get('index')}" for ident, g in groups.items()}
    return names


def pipeline_rows(record: str, result: Mapping[str, Any], source: RowSource) -> list[SeedRow]:
    """The rows of one pipeline record (its ``result`` part), every seed run of it.

    Expected shape (``benchmarks.collect_pipeline``): ``runs`` ``{seed: {"seed", "trials", "pending_steps"}}``
    (or, in a record written before seeds were kept, top-level ``trials``); each trial ``{"step", "index",
    "stage", "role", "status", "params", "host", "metrics"}``. A row is a SUCCEEDED trial with a numeric
    ``metrics.lfw_acc`` (``source.metric``; its ``lfw_acc_std``, ``mflops``, ``params_m``, ``epochs``; ``params.seed``,
    ``params.config``, ``params.threads``; optional ``params.budget`` / ``metrics.budget`` and
    ``params.target_runtime``), of a step ``source.steps`` names (default: every non-auxiliary trial). Its
    seed is ``params.seed`` (a ``foreach`` over seeds: one network, a row per seed), else the run's seed; its
    network's name :func:`_step_names` (or ``source.label``). Its latency is the ``runtime.latency`` trial
    whose ``params.model`` (or one of ``params.models``: ``metrics.latency_ms`` is then ``{name: {runtime:
    ms}}``) is under ``$RUN_DIR/<step>/<index>/``, else the trial's own ``metrics.latency_ms`` ``{runtime: ms}``.
    """
    rows = []
    for position, run in enumerate(record_runs(dict(result))):
        done = [t for t in run.get("trials") or [] if t.get("status") == "SUCCEEDED"]
        kept = []
        for t in done:
            m, step = t.get("metrics") or {}, str(t.get("step"))
            if _num(m.get(source.metric)) is None or t.get("stage") == "runtime.latency":
                continue
            if source.steps is not None and step not in source.steps:
                continue
            role = source.role or PIPELINE_ROLES.get(str(t.get("role")))
            if role is None:  # an auxiliary trial: a row only when its step is named (then a searched network)
                if source.steps is None:
                    continue
                role = "searched"
            kept.append((t, role))
        by_step: dict[str, list[Mapping[str, Any]]] = {}
        for t, _ in kept:
            by_step.setdefault(str(t.get("step")), []).append(t)
        names = {step: _step_names(step, trials) for step, trials in by_step.items()}
        for t, role in kept:
            m, p, step = t.get("metrics") or {}, t.get("params") or {}, str(t.get("step"))
            latency, cpu = _timed(t, done)
            timer, timed_name = _timing(t, done)
            name = (source.label(t, done) if source.label else None) or names[step][_identity(t)]
            pair = source.pair(t, done) if source.pair else None
            rows.append(SeedRow(
                name=name, method=source.method,
                role=role, target_runtime=None if role == "reference" else
                (p.get("target_runtime") or source.target_runtime.get(step)),
                seed=_trial_seed(t, run), lfw_acc=float(m[source.metric]),
                lfw_acc_std=_num(m.get(f"{source.metric}_std")),
                latency_ms=latency, mflops=_num(m.get("mflops")), params_m=_num(m.get("params_m")),
                budget=(source.budget(t, done) if source.budget else None) or _budget(t),
                device=_device(t, cpu), record=record, network=_network(t), step=step,
                pair=None if pair is None else str(pair), index=_int(t.get("index")), run=position,
                timed_by=None if timer is None else (str(timer.get("step")), _int(timer.get("index")), timed_name),
                timed_beside=_beside(t, done)))
    return rows


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _run_done(result: Mapping[str, Any], row: SeedRow) -> list[Mapping[str, Any]]:
    runs = record_runs(dict(result))
    if not 0 <= row.run < len(runs):
        raise ValueError(f"{row.record}: the record has {len(runs)} seed run(s), no run {row.run} (row {row.name})")
    return [t for t in runs[row.run].get("trials") or [] if t.get("status") == "SUCCEEDED"]


def _trial(done: Sequence[Mapping[str, Any]], step: str, index: int | None) -> Mapping[str, Any]:
    found = [t for t in done if t.get("step") == step and _int(t.get("index")) == index]
    if len(found) != 1:
        raise ValueError(f"{len(found)} succeeded trials of step {step} index {index} in the run (expected one)")
    return found[0]


def row_trials(result: Mapping[str, Any], row: SeedRow) -> tuple[Mapping[str, Any], Mapping[str, Any] | None,
                                                                  list[Mapping[str, Any]]]:
    """The recorded trials behind ``row`` (one of :func:`pipeline_rows`'s rows of ``result``): the trial that
    trained its network, the ``runtime.latency`` trial that timed it (None: none did) and the succeeded trials
    of its seed run."""
    done = _run_done(result, row)
    train = _trial(done, row.step, row.index)
    timer = None if row.timed_by is None else _trial(done, row.timed_by[0], row.timed_by[1])
    return train, timer, done


# -- the method records' sources ---------------------------------------------------------------------------
def _trial_at(path: Any, done: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The trial whose folder ``path`` (``$RUN_DIR/<step>/<index>/...``) is in."""
    m = _TRIAL_PATH.match(str(path)) if isinstance(path, str) else None
    if not m:
        return None
    return next((t for t in done if t.get("step") == m.group(1) and t.get("index") == int(m.group(2))), None)


def ofa_label(trial: Mapping[str, Any], done: Sequence[Mapping[str, Any]]) -> str | None:
    """OFA: a fine-tuned or retrained pick is its step; the equal-budget reference (an ``engine.train``
    reference) is named with its epochs, the budget it is equal to."""
    epochs = _num((trial.get("metrics") or {}).get("epochs"))
    if trial.get("stage") == "engine.train" and trial.get("role") == "reference" and epochs is not None:
        return f"{trial.get('step')} ({epochs:g} epochs)"
    return None


def ofa_budget(trial: Mapping[str, Any], done: Sequence[Mapping[str, Any]]) -> str | None:
    """OFA: a fine-tuned pick's budget is the supernet's epochs plus its fine-tuning epochs."""
    if trial.get("stage") != "ofa.finetune":
        return None
    from benchmarks.bench_ofa import _supernet_epochs  # the supernet's phases (its config's, else the default)

    supernet = next((t for t in done if t.get("stage") == "ofa.train_supernet"), None)
    sup, epochs = _supernet_epochs(supernet) if supernet else None, _num((trial.get("metrics") or {}).get("epochs"))
    if sup is None or epochs is None:
        return None
    return f"{sup + epochs:g} epochs: {sup:g} supernet + {epochs:g} fine-tuning of {_recipe(trial)}"


def tnas_target(trial: Mapping[str, Any], done: Sequence[Mapping[str, Any]]) -> str | None:
    """TNAS: a student's FLOPs target, ``ratio R``: a uniform student's ``uniform_ratio``; a searched student's
    search's ``target_width_ratio`` (the search whose ``arch`` path it trained)."""
    p = trial.get("params") or {}
    ratio = p.get("uniform_ratio")
    if ratio is None:
        search = _trial_at(p.get("arch"), done)
        ratio = ((search or {}).get("params") or {}).get("target_width_ratio")
    return f"ratio {ratio:g}" if _num(ratio) is not None else None


def tnas_label(trial: Mapping[str, Any], done: Sequence[Mapping[str, Any]]) -> str | None:
    target = tnas_target(trial, done)
    return f"{trial.get('step')} {target}" if target else None


def enas_match(trial: Mapping[str, Any], done: Sequence[Mapping[str, Any]]) -> str | None:
    """ENAS: the top arc a network stands for: a top arc's ``rank`` in the search's ranking (its search entry,
    ``params.search``; else its trial index + 1), so that the top arc retrained with other seeds (enas_cpu.yml's
    ``top1_seeds``) joins it; a random arc's ``matches`` (its ``enas.random_arcs`` entry)."""
    search = (trial.get("params") or {}).get("search")
    if trial.get("role") == "candidate":
        rank = _int(search.get("rank")) if isinstance(search, dict) else None
        index = _int(trial.get("index"))
        return str(rank) if rank is not None else (str(index + 1) if index is not None else None)
    matches = search.get("matches") if isinstance(search, dict) else None
    return str(matches) if isinstance(matches, int) else None


def enas_label(trial: Mapping[str, Any], done: Sequence[Mapping[str, Any]]) -> str | None:
    match = enas_match(trial, done)
    return None if match is None else ("top" if trial.get("role") == "candidate" else "random") + match


#: OFA's searched networks by step: each pick fine-tuned from the supernet, and the onnxruntime 0.7x pick also
#: retrained from scratch with the reference's protocol (recipes/nni/ofa_cpu.yml)
OFA_STEPS = {**{f"finetune_{rt}_{bound}": rt for rt in RUNTIMES for bound in ("mbf_x05", "07x_mbf_x05")},
             "retrain_onnxruntime_07x_mbf_x05": "onnxruntime"}
#: ENAS's retrain steps (recipes/nni/enas_cpu.yml), each top-arc step followed by its random arcs' step
ENAS_STEPS = ("retrain", "random_retrain", "top1_seeds", "random1_seeds", "top23_seeds", "random23_seeds")
#: the records rows are gathered from: the hand-designed reference front, and each method's experiment file
ROW_SOURCES: tuple[RowSource, ...] = (
    RowSource("reference_front_cpu", "hand-designed", role="reference"),
    # the 4 fine-tuned picks and the retrained one (a foreach over seeds each) and the equal-budget reference
    RowSource("ofa_cpu", "ofa", steps=(*OFA_STEPS, "equal_budget"), target_runtime=OFA_STEPS, label=ofa_label,
              budget=ofa_budget),
    # searched students vs the uniform ones of the same FLOPs target (target x seed foreach steps)
    RowSource("tnas_cpu", "tnas", steps=("student", "uniform"), own_references=False, label=tnas_label,
              pair=tnas_target,
              pair_title="searched vs uniformly narrowed students of the same FLOPs target, same teacher and seeds"),
    # the top arcs vs the random arcs of matching predicted latency (its table: onnxruntime); each arc's runs with
    # more seeds join its row
    RowSource("enas_cpu", "enas", steps=ENAS_STEPS,
              target_runtime={s: "onnxruntime" for s in ENAS_STEPS if not s.startswith("random")},
              own_references=False, label=enas_label, pair=enas_match,
              pair_title="a top arc vs the random arc of matching predicted latency (onnxruntime table), over the "
                         "seeds each was retrained with"),
)


def load_result(results: Path, record: str) -> dict[str, Any] | None:
    """``<results>/<record>.json``'s ``result`` part (None when not recorded)."""
    f = results / f"{record}.json"
    if not f.is_file():
        return None
    data = json.loads(f.read_text(encoding="utf-8"))
    return data.get("result") if isinstance(data.get("result"), dict) else None


def gather_rows(results: Path, sources: Sequence[RowSource] = ROW_SOURCES) -> list[SeedRow]:
    """Every row of every recorded source (a source not recorded yet gives none)."""
    rows: list[SeedRow] = []
    for source in sources:
        result = load_result(results, source.record)
        if result is not None:
            rows += pipeline_rows(source.record, result, source)
    return rows


@dataclasses.dataclass(frozen=True)
class Network:
    """One network over its seed runs: accuracy statistics and latency per runtime."""

    record: str
    name: str
    method: str
    role: str
    target_runtime: str | None
    rows: tuple[SeedRow, ...]  # one per seed, in the record's run order
    accuracy: SeedStats
    latency_ms: dict[str, float | None]  # per runtime: the median over its seed runs' measurements

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.rows]

    @property
    def pair(self) -> str | None:
        """The key pairing it with the other side of its method's own comparison (``RowSource.pair``)."""
        return self.rows[0].pair


def networks(rows: Sequence[SeedRow]) -> list[Network]:
    """``rows`` grouped by (record, name), in first-seen order; a seed seen twice keeps its last row."""
    groups: dict[tuple[str, str], dict[Any, SeedRow]] = {}
    for row in rows:
        groups.setdefault((row.record, row.name), {})[row.seed] = row
    out = []
    for (record, name), by_seed in groups.items():
        rs = tuple(by_seed.values())
        lat = latency_over_seeds([r.latency_ms for r in rs])
        first = rs[0]
        out.append(Network(record, name, first.method, first.role, first.target_runtime, rs,
                           seed_stats([r.lfw_acc for r in rs]), lat))
    return out


#: relative MFLOPs difference under which an untrained network timed beside a searched one counts as the
#: architecture of the reference it is named after
SAME_FLOPS_REL = 1e-3


def side_by_side(searched: Network, reference: Network, runtime: str) -> tuple[float, float] | None:
    """``(searched ms, reference ms)`` on ``runtime`` as one ``runtime.latency`` trial measured both, in the same
    interleaved rounds: the medians over the searched network's seed runs that such a trial timed; None when none.

    The reference is in that trial either as one of its own checkpoints (a reference of the same run, e.g. OFA's
    equal-budget network) or as its architecture untrained under its own name (OFA's ``side_by_side`` times
    ``mbf_x05`` built from the reference front's recipe: latency does not depend on the weights) -- the latter
    only when the MFLOPs agree, so a name given to another network is not taken for the reference.
    """
    flops = reference.rows[0].mflops if reference.rows else None
    pairs = []
    for row in searched.rows:
        for key, trial in sorted(row.timed_beside.items()):
            name = next((r.timed_beside[key]["name"] for r in reference.rows
                         if (r.record, r.run) == (row.record, row.run) and key in r.timed_beside), None)
            other = trial["others"].get(name if name is not None else reference.name)
            if name is None and not (other is not None and other.get("trained") is False and flops
                                     and other.get("mflops") is not None
                                     and abs(other["mflops"] - flops) <= SAME_FLOPS_REL * flops):
                continue
            s, r = trial["latency_ms"].get(runtime), (other or {}).get("latency_ms", {}).get(runtime)
            if s is not None and r is not None:
                pairs.append((s, r))
                break  # one timing run per seed run
    if not pairs:
        return None
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
