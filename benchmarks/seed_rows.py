"""Rows of the seed-level comparisons: one per trained network per seed run, read from pipeline records.

A row (:class:`SeedRow`) is what the headline comparison and the reference-front table are built
from: ``{name, method, role (reference | searched), target_runtime, seed, lfw_acc, latency_ms
{onnxruntime, tflite}, mflops, budget, device, record}``. :func:`gather_rows` reads them from the
records listed in :data:`ROW_SOURCES` (``benchmarks/results/<record>.json``, written by
``benchmarks.collect_pipeline``, every seed run of each); :func:`networks` groups a network's rows
over seeds. Nothing is measured here and nothing is filled in: a network without a latency trial has
no latency.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmarks.collect_pipeline import record_runs
from benchmarks.seed_stats import SeedStats, seed_stats

#: the runtimes a row has a latency for
RUNTIMES = ("onnxruntime", "tflite")
RUN_DIR = "$RUN_DIR"
ROLES = ("reference", "searched")
#: a pipeline trial's role (adapters/nni/envelope.py) -> a row's role; auxiliary trials make no row
PIPELINE_ROLES = {"reference": "reference", "candidate": "searched"}


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


#: the records rows are gathered from. The reference front is wired; a method's record joins with its own
#: source, e.g. ``RowSource("ofa_cpu", "ofa", steps=("reference", "finetune_onnxruntime", "finetune_tflite"),
#: target_runtime={"finetune_onnxruntime": "onnxruntime", "finetune_tflite": "tflite"})``.
ROW_SOURCES: tuple[RowSource, ...] = (RowSource("reference_front_cpu", "hand-designed", role="reference"),)
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


def _timed(trial: Mapping[str, Any], done: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float | None], str | None]:
    """The latency of ``trial``'s network and the CPU it was timed on: a runtime.latency trial timing its
    checkpoint alone, else one timing it among several (``models``), else the trial's own ``latency_ms``."""
    index = trial.get("index")
    prefix = f"{RUN_DIR}/{trial.get('step')}/" + (f"{index:03d}/" if isinstance(index, int) else "")
    latency = [t for t in done if t.get("stage") == "runtime.latency"]
    for t in latency:
        if str((t.get("params") or {}).get("model", "")).startswith(prefix):
            return _latency(t.get("metrics") or {}), _cpu(t)
    for t in latency:
        models = (t.get("params") or {}).get("models")
        for name, path in (models.items() if isinstance(models, dict) else ()):
            if str(path).startswith(prefix):
                return _latency(t.get("metrics") or {}, name), _cpu(t)
    if isinstance((trial.get("metrics") or {}).get("latency_ms"), dict):
        return _latency(trial.get("metrics") or {}), None
    return {rt: None for rt in RUNTIMES}, None


def _cpu(trial: Mapping[str, Any]) -> str | None:
    device = (trial.get("metrics") or {}).get("device")
    return device.get("cpu") if isinstance(device, dict) else device if isinstance(device, str) else None


def _budget(trial: Mapping[str, Any]) -> str:
    """The trial's stated budget (a ``budget`` parameter or metric), else its epochs and recipe."""
    m, p = trial.get("metrics") or {}, trial.get("params") or {}
    for stated in (p.get("budget"), m.get("budget")):
        if isinstance(stated, str):
            return stated
    recipe = Path(str(p["config"])).stem if p.get("config") else trial.get("stage")
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
    recipe = Path(str(p["config"])).stem if p.get("config") else str(trial.get("stage"))
    kwargs = p.get("network_kwargs")
    return f"{recipe} {json.dumps(kwargs)}" if kwargs else recipe


def pipeline_rows(record: str, result: Mapping[str, Any], source: RowSource) -> list[SeedRow]:
    """The rows of one pipeline record (its ``result`` part), every seed run of it.

    Expected shape (``benchmarks.collect_pipeline``): ``runs`` ``{seed: {"seed", "trials", "pending_steps"}}``
    (or, in a record written before seeds were kept, top-level ``trials``); each trial ``{"step", "index",
    "stage", "role", "status", "params", "host", "metrics"}``. A row is a SUCCEEDED trial with a numeric
    ``metrics.lfw_acc`` (its ``lfw_acc_std``, ``mflops``, ``params_m``, ``epochs``; ``params.seed``,
    ``params.config``, ``params.threads``; optional ``params.budget`` / ``metrics.budget`` and
    ``params.target_runtime``), of a step ``source.steps`` names (default: every non-auxiliary trial). Its
    latency is the ``runtime.latency`` trial whose ``params.model`` (or one of ``params.models``) is under
    ``$RUN_DIR/<step>/<index>/``, else the trial's own ``metrics.latency_ms`` ``{runtime: ms}``.
    """
    rows = []
    for run in record_runs(dict(result)):
        done = [t for t in run.get("trials") or [] if t.get("status") == "SUCCEEDED"]
        per_step: dict[str, int] = {}
        for t in done:
            per_step[t.get("step")] = per_step.get(t.get("step"), 0) + 1
        for t in done:
            m, p, step = t.get("metrics") or {}, t.get("params") or {}, str(t.get("step"))
            if _num(m.get("lfw_acc")) is None or t.get("stage") == "runtime.latency":
                continue
            if source.steps is not None and step not in source.steps:
                continue
            role = source.role or PIPELINE_ROLES.get(str(t.get("role")))
            if role is None:  # an auxiliary trial: a row only when its step is named (then a searched network)
                if source.steps is None:
                    continue
                role = "searched"
            latency, cpu = _timed(t, done)
            seed = run.get("seed") if run.get("seed") is not None else p.get("seed")
            rows.append(SeedRow(
                name=step if per_step[t.get("step")] == 1 else f"{step}/{t.get('index')}", method=source.method,
                role=role, target_runtime=None if role == "reference" else
                (p.get("target_runtime") or source.target_runtime.get(step)),
                seed=seed, lfw_acc=float(m["lfw_acc"]), lfw_acc_std=_num(m.get("lfw_acc_std")), latency_ms=latency,
                mflops=_num(m.get("mflops")), params_m=_num(m.get("params_m")), budget=_budget(t),
                device=_device(t, cpu), record=record, network=_network(t)))
    return rows


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


def networks(rows: Sequence[SeedRow]) -> list[Network]:
    """``rows`` grouped by (record, name), in first-seen order; a seed seen twice keeps its last row."""
    groups: dict[tuple[str, str], dict[Any, SeedRow]] = {}
    for row in rows:
        groups.setdefault((row.record, row.name), {})[row.seed] = row
    out = []
    for (record, name), by_seed in groups.items():
        rs = tuple(by_seed.values())
        lat = {}
        for rt in RUNTIMES:
            vals = [r.latency_ms.get(rt) for r in rs if isinstance(r.latency_ms.get(rt), float)]
            lat[rt] = statistics.median(vals) if vals else None
        first = rs[0]
        out.append(Network(record, name, first.method, first.role, first.target_runtime, rs,
                           seed_stats([r.lfw_acc for r in rs]), lat))
    return out
