"""Pipelines of stages: what the facenas NNI advisors schedule as trials.

A pipeline is a list of *steps*; each step runs one ``STAGES`` entry as one or more NNI trials.
Steps start in order; the trials of one step run in parallel, up to NNI's ``trialConcurrency``. A
step starts when every trial of the previous one has ended, or earlier, beside the previous step's
last running trials, once every trial of that step has been issued and every step it refers to
(``${STEP...}`` in its ``params`` or ``foreach``) has ended: free trial slots are not left idle
while a step's last trials run (e.g. 3 retrainings at ``trialConcurrency`` 2 then 3 more). A step
that refers to ``${experiment...}`` (paths other steps may write) waits for every earlier step, and
nothing starts beside an ``exclusive`` step's trial (below). A method's whole search becomes one
experiment in the portal, e.g. for OFA: supernet training (1 trial, per-epoch intermediate
results) -> N candidate evaluations -> search (1 trial) -> retrain of the k chosen architectures.

Step fields (``StepConfig``): ``name``, ``stage``, ``params`` (JSON; may hold references, below),
``trials`` (how many; the budget of a ``sample`` step), ``foreach`` (a list, literal or a
reference: one trial per item), ``sample`` (each trial gets ``params["sample"]`` from a facenas
ask/tell strategy over a space, told every trial's final metrics -- this is how a search over a
space runs as HPO trials), ``retries`` (re-runs of a failed trial), ``space``/``space_config``
(the space of ``params["sample"]`` when it is not a ``sample`` step, for architecture records),
``role`` (``candidate``, ``reference`` or ``auxiliary``, see below; default: ``auxiliary`` for the
stages that yield no network -- data, supernet training, searches -- else ``candidate``).

Roles decide what the portal calls the best trial. NNI shows as best the trial with the highest
final ``default``, whatever step it belongs to, so only ``candidate`` steps (the networks the
search proposes) report their ``default`` to NNI; ``reference`` (a teacher, a uniform baseline)
and ``auxiliary`` steps (data, supernet, the search itself) report ``default`` = NaN, which the
portal never ranks, and their own measure as ``objective``. Every trial's final metric also
carries ``step`` and ``role`` (the portal's trial table can show them as columns). Inside the
pipeline (references, strategies, ``facenas nni results``) ``default`` stays the stage's own.

``batch`` (units per trial, default 1: a trial then runs up to ``batch`` of the step's units one
after another in one process -- each with its own folder and ``result.json``, each reported to
NNI as an intermediate result, the best one as the trial's final result -- so a step of N
units takes ceil(N / batch) trials and pays NNI's per-trial start-up that many times).

``exclusive`` (default: the stage's own, true for the timing stages ``runtime.latency`` and
``runtime.lut``): the step's trials run one at a time and only once every earlier trial has ended,
so nothing else runs beside a measurement whatever ``trialConcurrency`` is (``run-local`` runs one
trial at a time anyway).

References inside ``params`` (and ``foreach``) pass earlier steps' results and artefact paths into
later steps. ``${...}`` alone in a string is replaced by the value itself (any JSON type); inside a
longer string, by its text. ``$${`` writes a literal ``${``.

- ``${STEP.out_dir}``, ``${STEP.result.checkpoint}``, ``${STEP.metrics.default}``,
  ``${STEP.arch}``, ``${STEP.params.sample}`` -- the one successful trial of STEP (its trial record:
  ``result.json`` of :mod:`facenas.adapters.nni.trial`);
- ``${STEP[best]...}`` -- the successful trial with the highest ``default``; ``${STEP[3]...}`` --
  trial index 3; ``${STEP[*]...}`` -- the list over all successful trials (keys apply to each);
- ``${item}``, ``${item.sample}`` -- the current ``foreach`` item; ``${index}`` -- the trial's
  index in its step; ``${seed}`` -- pipeline seed + index; ``${sample}`` -- the trial's sample;
  ``${experiment.id}``, ``${experiment.output_dir}``.

A failed trial is recorded (FAILED in NNI, ``status: FAILED`` in its ``result.json``) and the
pipeline goes on; references see successful trials only. A step whose references cannot be
resolved (e.g. every trial it depends on failed) is skipped with a note, and the summary says so.

:class:`PipelineScheduler` holds the schedule without any NNI dependency, so it can be tested and
run locally (:func:`run_pipeline_locally`); :mod:`facenas.adapters.nni.advisor` drives it from NNI.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Mapping

from facenas.config import TypedConfig
from facenas.errors import ConfigError, FacenasError
from facenas.adapters.nni.envelope import ROLES, TrialSpec
from facenas.utils.io import read_json

log = logging.getLogger(__name__)

_REF = re.compile(r"\$\{([^${}]+)\}")
_ROOT = re.compile(r"^(?P<name>[A-Za-z_][\w\-]*)(?:\[(?P<sel>\*|best|\d+)\])?$")
#: unit statuses
ISSUED, SUCCEEDED, FAILED, LOST = "issued", "succeeded", "failed", "lost"


@dataclasses.dataclass
class SampleConfig(TypedConfig):
    """Samples for a step's trials, proposed by a facenas strategy (ask) and told the results.

    Args:
        space: ``SPACES`` name.
        space_config: the space's constructor kwargs.
        strategy: ``STRATEGIES`` name (``random``; OFA's and ENAS's strategies register theirs).
        strategy_args: extra constructor kwargs of the strategy.
        seed: the strategy's seed.
    """

    space: str = ""
    space_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    strategy: str = "random"
    strategy_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0

    def check(self, source: str) -> None:
        if not self.space:
            raise ConfigError(f"{source}: 'sample' needs a 'space' (a registered search space, e.g. 'toy')")


@dataclasses.dataclass
class StepConfig(TypedConfig):
    """One step of a pipeline (see the module docstring)."""

    name: str = ""
    stage: str = ""
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    trials: int = 1
    foreach: Any = None
    sample: dict[str, Any] | None = None
    retries: int = 0
    space: str | None = None
    space_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    role: str | None = None
    batch: int = 1
    exclusive: bool | None = None  # None: the stage's default (facenas.nas.stages.exclusive_stage)

    def check(self, source: str) -> None:
        if self.role is not None and self.role not in ROLES:
            raise ConfigError(f"{source}: step '{self.name}': role {self.role!r} is not one of {list(ROLES)}")
        if not self.name or not re.match(r"^[A-Za-z_][\w\-]*$", self.name):
            raise ConfigError(f"{source}: step name {self.name!r} must be a word (letters, digits, _ or -)")
        if not self.stage:
            raise ConfigError(f"{source}: step '{self.name}' has no 'stage' (a STAGES name such as 'toy.evaluate')")
        if self.trials < 1:
            raise ConfigError(f"{source}: step '{self.name}': trials={self.trials}, expected >= 1")
        if self.retries < 0:
            raise ConfigError(f"{source}: step '{self.name}': retries={self.retries}, expected >= 0")
        if self.batch < 1:
            raise ConfigError(f"{source}: step '{self.name}': batch={self.batch}, expected >= 1 (units per trial)")
        if self.foreach is not None and self.sample is not None:
            raise ConfigError(f"{source}: step '{self.name}' has both 'foreach' and 'sample'; use one")
        if self.foreach is not None and not isinstance(self.foreach, (list, str)):
            raise ConfigError(f"{source}: step '{self.name}': foreach must be a list or a '${{...}}' reference")
        if self.sample is not None:
            SampleConfig.from_dict(self.sample, source=f"{source}: step '{self.name}' sample")

    def sample_config(self) -> SampleConfig | None:
        return None if self.sample is None else SampleConfig.from_dict(self.sample, source=f"step '{self.name}' sample")


@dataclasses.dataclass
class PipelineConfig(TypedConfig):
    """A pipeline: its steps plus where and how it runs.

    Args:
        steps: list of step dicts (:class:`StepConfig` fields).
        name: a label for logs and the summary.
        seed: base of ``${seed}``.
        output_dir: experiment output folder (default: see :mod:`facenas.adapters.nni.paths`);
            ``{experiment_id}`` in it is replaced.
        finish_experiment: when the pipeline is done, lower the experiment's ``maxTrialNumber`` to
            the trials it ran (through the local NNI REST API, as ``nnictl update trialnum``) so
            the experiment ends as DONE instead of waiting in "no more trial".
    """

    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    name: str = "facenas"
    seed: int = 0
    output_dir: str | None = None
    finish_experiment: bool = True

    def check(self, source: str) -> None:
        if not self.steps:
            raise ConfigError(f"{source}: a pipeline needs at least one step")
        names = [s.name for s in self.step_configs(source)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"{source}: step names must be unique; repeated: {dup}")
        reserved = sorted(set(names) & {"item", "index", "seed", "sample", "experiment"})
        if reserved:
            raise ConfigError(f"{source}: step names {reserved} are reserved words in references; rename them")
        check_references(self.step_configs(source), source)

    def step_configs(self, source: str = "pipeline") -> list[StepConfig]:
        out = []
        for i, step in enumerate(self.steps):
            if not isinstance(step, Mapping):
                raise ConfigError(f"{source}: step {i} is {type(step).__name__}, expected a dict of step fields")
            out.append(StepConfig.from_dict(step, source=f"{source}: step {i}"))
        return out

    def spaces(self) -> list[tuple[str, dict[str, Any]]]:
        """The spaces the pipeline samples from (for the portal's search space), in step order."""
        out = []
        for step in self.step_configs():
            sc = step.sample_config()
            if sc is not None:
                out.append((sc.space, dict(sc.space_config)))
            elif step.space:
                out.append((step.space, dict(step.space_config)))
        return out


#: names a reference may start with besides a step's name
CONTEXT_NAMES = ("item", "index", "seed", "sample", "experiment")


def references(obj: Any) -> list[str]:
    """Every ``${...}`` reference in ``obj`` (through dicts and lists), ``$${`` escapes left out."""
    if isinstance(obj, Mapping):
        return [r for v in obj.values() for r in references(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in references(v)]
    if not isinstance(obj, str) or "${" not in obj:
        return []
    return [m.group(1) for m in _REF.finditer(obj.replace("$${", "\0"))]


def check_references(steps: list[StepConfig], source: str) -> None:
    """Fail at load time for a reference to a step that does not exist or does not run before.

    Which trials succeed is known only while the pipeline runs (a step whose references then have
    nothing to point at is skipped with a note); a misspelt or misplaced step name is known now.
    """
    import difflib

    names = [s.name for s in steps]
    for k, step in enumerate(steps):
        for field, value in (("params", step.params), ("foreach", step.foreach)):
            for ref in references(value):
                root = ref.strip().split(".")[0]
                m = _ROOT.match(root)
                if not m:
                    raise ConfigError(f"{source}: step '{step.name}' {field}: bad reference '${{{ref}}}': expected "
                                      "STEP.key, STEP[*].key, STEP[best].key, STEP[i].key or one of "
                                      f"{list(CONTEXT_NAMES)}")
                name = m.group("name")
                if name == "item" and field == "params" and step.foreach is None:
                    raise ConfigError(f"{source}: step '{step.name}' {field}: '${{{ref}}}': ${{item}} exists only in "
                                      "a step with 'foreach'")
                if name in CONTEXT_NAMES and m.group("sel") is None:
                    continue
                if name not in names:
                    close = difflib.get_close_matches(name, names + list(CONTEXT_NAMES), n=2, cutoff=0.6)
                    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                    raise ConfigError(f"{source}: step '{step.name}' {field}: '${{{ref}}}' names no step '{name}'"
                                      f"{hint} (steps: {names}; context names: {list(CONTEXT_NAMES)})")
                if names.index(name) >= k:
                    raise ConfigError(f"{source}: step '{step.name}' {field}: '${{{ref}}}' refers to step '{name}', "
                                      "which does not run before it; a step can only use earlier steps' results")


#: the step fields that decide a step's results: a resumed run re-runs a step when one of them changed
#: (``role``, ``retries`` and ``batch`` only change how it is reported and scheduled)
RESULT_FIELDS = ("stage", "params", "trials", "foreach", "sample", "space", "space_config")


def _result_fields(step: Mapping[str, Any]) -> dict[str, str]:
    """A step's :data:`RESULT_FIELDS`, defaults filled in, as canonical JSON text for comparison."""
    data = StepConfig.from_dict(dict(step), source="saved step").to_dict()
    return {f: json.dumps(data.get(f), sort_keys=True) for f in RESULT_FIELDS}


def _step_name(ref: str) -> str:
    m = _ROOT.match(ref.strip().split(".")[0])
    return m.group("name") if m else ""


def step_uses(step: StepConfig) -> set[str]:
    """The names a step's ``params`` and ``foreach`` refer to: earlier steps, and context names (``experiment``)."""
    return {_step_name(r) for r in references([step.params, step.foreach])}


def select_steps(config: PipelineConfig, names: list[str], source: str = "--steps") -> PipelineConfig:
    """``config`` cut to the steps ``names`` (the file's order kept): ``facenas nni run-local --steps``.

    For a step that does not need the rest of its pipeline (a longer-budget reference, a supernet)
    run on its own, in its own folder or ahead of the whole file in the run's folder: a run of the
    whole file resumed there keeps it (its parameters are the file's). A selected step may only use
    selected steps' results; an unknown name or a missing dependency is a :class:`ConfigError`.
    """
    import difflib

    steps = config.step_configs(source)
    known = [s.name for s in steps]
    wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"{source}: pipeline '{config.name}' has no step '{name}'{hint} (steps: {known})")
    if not wanted:
        raise ConfigError(f"{source}: name at least one step (steps: {known})")
    for step in steps:
        missing = sorted((step_uses(step) - set(CONTEXT_NAMES)) - set(wanted)) if step.name in wanted else []
        if missing:
            raise ConfigError(f"{source}: step '{step.name}' uses the results of {missing}, which are not selected: "
                              f"add them (--steps {','.join(n for n in known if n in set(wanted) | set(missing))}) "
                              "or run the whole file")
    kept = [dict(raw) for raw, step in zip(config.steps, steps) if step.name in wanted]
    return dataclasses.replace(config, steps=kept)


def search_pipeline(
    space: str,
    stage: str,
    budget: int,
    params: Mapping[str, Any] | None = None,
    space_config: Mapping[str, Any] | None = None,
    strategy: str = "random",
    strategy_args: Mapping[str, Any] | None = None,
    seed: int = 0,
    retries: int = 0,
    output_dir: str | None = None,
    finish_experiment: bool = True,
) -> PipelineConfig:
    """A one-step pipeline: ``budget`` trials of ``stage`` on samples a facenas strategy proposes."""
    step = {"name": "search", "stage": stage, "params": dict(params or {}), "trials": int(budget), "retries": int(retries),
            "sample": {"space": space, "space_config": dict(space_config or {}), "strategy": strategy,
                       "strategy_args": dict(strategy_args or {}), "seed": int(seed)}}
    return PipelineConfig.from_dict({"steps": [step], "name": f"search-{space}", "seed": int(seed),
                                     "output_dir": output_dir, "finish_experiment": finish_experiment},
                                    source="search tuner classArgs")


#: what ``facenas nni register`` registers (``nnictl algo register --meta`` format)
ALGORITHMS = [
    {"algoType": "advisor", "builtinName": "FacenasPipeline",
     "className": "facenas.adapters.nni.advisor.PipelineAdvisor"},
    {"algoType": "advisor", "builtinName": "FacenasSearch",
     "className": "facenas.adapters.nni.advisor.SearchAdvisor"},
]
_SEARCH_ARGS = ("space", "stage", "budget", "params", "space_config", "strategy", "strategy_args", "seed", "retries",
                "output_dir", "finish_experiment")


def config_from_tuner(name: str, class_args: Mapping[str, Any] | None) -> PipelineConfig:
    """The pipeline of a facenas advisor from its registered name and ``classArgs``."""
    from facenas.adapters.nni.variables import substitute_variables

    args = substitute_variables(class_args or {})  # ${vars.NAME} from classArgs.variables
    if name.lower() == "facenaspipeline":
        return PipelineConfig.from_dict(args, source="FacenasPipeline classArgs")
    if name.lower() == "facenassearch":
        unknown = sorted(set(args) - set(_SEARCH_ARGS))
        if unknown:
            raise ConfigError(f"FacenasSearch classArgs: unknown field(s) {unknown}; known: {list(_SEARCH_ARGS)}")
        missing = [k for k in ("space", "stage", "budget") if k not in args]
        if missing:
            raise ConfigError(f"FacenasSearch classArgs: missing {missing} (space, stage and budget are required)")
        return search_pipeline(**args)
    raise ConfigError(f"'{name}' is not a facenas advisor; facenas advisors: {[a['builtinName'] for a in ALGORITHMS]}")


def pipeline_config_of(tuner: Mapping[str, Any] | None) -> PipelineConfig | None:
    """The pipeline a yml ``tuner`` entry describes, or None if it names another tuner."""
    if not tuner:
        return None
    name = str(tuner.get("name") or "")
    if name.lower() not in {a["builtinName"].lower() for a in ALGORITHMS}:
        return None
    return config_from_tuner(name, tuner.get("classArgs") or tuner.get("class_args"))


class ReferenceError_(FacenasError):
    """A ``${...}`` reference cannot be resolved (unknown step, no successful trial, missing key)."""


@dataclasses.dataclass
class Unit:
    """One issued trial of a step."""

    param_id: int
    step: str
    index: int
    attempt: int
    out_dir: str
    params: dict[str, Any]
    sample: dict[str, Any] | None = None
    status: str = ISSUED
    trial_job_id: str | None = None
    metrics: dict[str, Any] | None = None
    nni_status: str | None = None
    group: int | None = None  # parameter id of the trial that runs this unit in a batch (``batch`` > 1)


class PipelineScheduler:
    """The state machine of a pipeline run; not thread-safe (callers hold a lock)."""

    def __init__(self, config: PipelineConfig, output_dir: str | Path, experiment_id: str | None = None):
        from facenas.nas.stages import STAGES

        self.config = config
        self.steps = config.step_configs()
        #: each step's role: its own, else its stage's default (``auxiliary`` for data/supernet/search stages)
        self.roles: dict[str, str] = {}
        #: steps whose trials run alone (timing): one at a time, nothing else beside them
        self.exclusive: dict[str, bool] = {}
        for step in self.steps:
            stage = STAGES.get(step.stage)  # unknown stage names fail at start-up, with close matches
            self.roles[step.name] = step.role or getattr(stage, "default_role", "candidate")
            self.exclusive[step.name] = (step.exclusive if step.exclusive is not None
                                         else bool(getattr(stage, "exclusive", False)))
        self.output_dir = Path(output_dir)
        self.experiment_id = experiment_id
        self.units: dict[int, Unit] = {}
        self.next_param_id = 0
        self.current = -1  # index of the running step
        self.step_state: dict[str, dict[str, Any]] = {s.name: _waiting_state() for s in self.steps}
        self.strategies: dict[str, Any] = {}
        self._interrupted: set[int] = set()
        self._held: tuple[int, TrialSpec] | None = None

    # -- queries ---------------------------------------------------------------------------------
    def step(self, name: str) -> StepConfig:
        for s in self.steps:
            if s.name == name:
                return s
        raise ReferenceError_(f"unknown step '{name}'; steps: {[s.name for s in self.steps]}")

    def pending_units(self) -> list[Unit]:
        return [u for u in self.units.values() if u.status == ISSUED]

    @property
    def finished(self) -> bool:
        return self.current >= len(self.steps) and not self.pending_units() and not self._draining()

    def status(self) -> str:
        if not self.finished:
            return "running"
        skipped = [s.name for s in self.steps if self.step_state[s.name]["status"] == "skipped"]
        failed = sum(1 for u in self.units.values() if u.status == FAILED)
        if skipped:
            return f"incomplete (skipped steps: {', '.join(skipped)})"
        return "finished" + (f" ({failed} failed trial(s))" if failed else "")

    def records(self, step: str) -> list[dict[str, Any]]:
        """Trial records of a step's successful trials, by index (``result.json`` when readable)."""
        self.step(step)
        out = []
        for unit in sorted(self.units.values(), key=lambda u: (u.index, u.attempt)):
            if unit.step != step or unit.status != SUCCEEDED:
                continue
            rec = None
            path = Path(unit.out_dir) / "result.json"
            if path.is_file():
                try:
                    rec = read_json(path)
                except (OSError, json.JSONDecodeError) as exc:
                    log.warning("cannot read %s: %s", path, exc)
            if rec is None:  # e.g. a remote trial without shared storage: what NNI told us
                rec = {"metrics": unit.metrics or {}, "params": unit.params, "arch": None, "result": {}}
            rec.setdefault("out_dir", unit.out_dir)
            rec["index"] = unit.index
            out.append(rec)
        return out

    # -- references ------------------------------------------------------------------------------
    def _lookup(self, path: str, ctx: Mapping[str, Any]) -> Any:
        parts = path.strip().split(".")
        m = _ROOT.match(parts[0])
        if not m:
            raise ReferenceError_(f"bad reference '${{{path}}}': expected STEP, STEP[*], STEP[best], STEP[i] or a context name")
        name, sel = m.group("name"), m.group("sel")
        if name in ctx and sel is None:
            value: Any = ctx[name]
        else:
            recs = self.records(name)
            if sel == "*":
                value = recs
            elif sel == "best":
                if not recs:
                    raise ReferenceError_(f"'${{{path}}}': step '{name}' has no successful trial")
                value = max(recs, key=lambda r: (r.get("metrics") or {}).get("default", -math.inf))
            elif sel is not None:
                match = [r for r in recs if r["index"] == int(sel)]
                if not match:
                    raise ReferenceError_(f"'${{{path}}}': step '{name}' has no successful trial with index {sel}")
                value = match[0]
            else:
                if len(recs) != 1:
                    raise ReferenceError_(
                        f"'${{{path}}}': step '{name}' has {len(recs)} successful trials; "
                        f"use {name}[*], {name}[best] or {name}[INDEX]"
                    )
                value = recs[0]
        over_list = sel == "*"
        for key in parts[1:]:
            value = [self._key(v, key, path) for v in value] if over_list else self._key(value, key, path)
        return value

    @staticmethod
    def _key(value: Any, key: str, path: str) -> Any:
        if isinstance(value, Mapping):
            if key not in value:
                raise ReferenceError_(f"'${{{path}}}': no key '{key}' (keys: {sorted(value)})")
            return value[key]
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            return value[int(key)]
        raise ReferenceError_(f"'${{{path}}}': cannot take '{key}' of a {type(value).__name__}")

    def resolve(self, obj: Any, ctx: Mapping[str, Any]) -> Any:
        """``obj`` with every ``${...}`` reference replaced (recursively through dicts and lists)."""
        if isinstance(obj, Mapping):
            return {k: self.resolve(v, ctx) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.resolve(v, ctx) for v in obj]
        if not isinstance(obj, str) or "${" not in obj:
            return obj
        text = obj.replace("$${", "\0")
        whole = _REF.fullmatch(text)
        if whole:
            return self._lookup(whole.group(1), ctx)
        out = _REF.sub(lambda m: str(self._lookup(m.group(1), ctx)), text)
        return out.replace("\0", "${")

    def referenced_paths(self, template: Any, resolved: Any) -> list[str]:
        """Artefact paths the references in ``template`` resolved to (``resolved`` is its resolution).

        A string that came from a reference to an earlier step (``${teacher.result.output}/last.pt``,
        ``${data.result.rec}``, ``${item}`` of a foreach over paths ...) counts when it is an absolute
        path that exists here, where the advisor runs: the trial checks the worker can read it before
        its stage runs (:func:`facenas.adapters.nni.trial.check_inputs`).
        """
        out: list[str] = []

        def from_step(text: str) -> bool:
            for m in _REF.finditer(text.replace("$${", "\0")):
                root = _ROOT.match(m.group(1).strip().split(".")[0])
                if root and (root.group("name") == "item" or root.group("name") in self.step_state):
                    return True
            return False

        def walk(t: Any, r: Any) -> None:
            if isinstance(t, Mapping) and isinstance(r, Mapping):
                for k, v in t.items():
                    if k in r:
                        walk(v, r[k])
            elif isinstance(t, list) and isinstance(r, list) and len(t) == len(r):
                for tv, rv in zip(t, r):
                    walk(tv, rv)
            elif isinstance(t, str) and "${" in t and from_step(t):
                for v in (r if isinstance(r, list) else [r]):
                    if isinstance(v, str) and v.startswith("/") and "\n" not in v and Path(v).exists() and v not in out:
                        out.append(v)

        walk(template, resolved)
        return out

    # -- scheduling ------------------------------------------------------------------------------
    def _context(self, step: StepConfig, index: int, sample: Mapping[str, Any] | None) -> dict[str, Any]:
        st = self.step_state[step.name]
        ctx: dict[str, Any] = {"index": index, "seed": self.config.seed + index,
                               "experiment": {"id": self.experiment_id, "output_dir": str(self.output_dir)}}
        if st["items"] is not None:
            ctx["item"] = st["items"][index]
        if sample is not None:
            ctx["sample"] = dict(sample)
        return ctx

    def _start(self, k: int) -> None:
        from facenas.nas.space import create_space
        from facenas.nas.strategy import STRATEGIES

        step = self.steps[k]
        st = self.step_state[step.name]
        st["status"] = "running"
        try:
            if step.foreach is not None:
                items = self.resolve(step.foreach, {"experiment": {"id": self.experiment_id, "output_dir": str(self.output_dir)}})
                if not isinstance(items, list):
                    raise ReferenceError_(f"foreach of step '{step.name}' gave a {type(items).__name__}, expected a list")
                st["items"] = items
                st["total"] = len(items)
            else:
                st["total"] = step.trials
            sc = step.sample_config()
            if sc is not None and step.name not in self.strategies:
                space = create_space(sc.space, **sc.space_config)
                strategy = STRATEGIES.create(sc.strategy, space=space, seed=sc.seed, **sc.strategy_args)
                if st["strategy_state"] is not None:
                    strategy.load_state_dict(st["strategy_state"])
                self.strategies[step.name] = strategy
        except FacenasError as exc:
            self._skip(step, str(exc))
            return
        log.info("pipeline %s: step '%s' (%s) starts: %s trial(s)", self.config.name, step.name, step.stage, st["total"])
        if st["total"] == 0:
            st["status"], st["note"] = "done", "no items"

    def _skip(self, step: StepConfig, reason: str) -> None:
        st = self.step_state[step.name]
        st["status"], st["note"] = "skipped", reason
        log.warning("pipeline %s: step '%s' skipped: %s", self.config.name, step.name, reason)

    def _step_done(self, step: StepConfig) -> bool:
        st = self.step_state[step.name]
        if st["status"] in ("done", "skipped"):
            return True
        if st["queue"] or any(u.step == step.name and u.status == ISSUED for u in self.units.values()):
            return False
        return st["exhausted"] or st["next_index"] >= st["total"]

    def _mark_done(self, step: StepConfig) -> None:
        st = self.step_state[step.name]
        if st["status"] == "running":
            ok = sum(1 for u in self.units.values() if u.step == step.name and u.status == SUCCEEDED)
            total = st["next_index"] if st["exhausted"] else st["total"]
            st["status"], st["note"] = "done", f"{ok}/{total} succeeded"
            log.info("pipeline %s: step '%s' done: %s", self.config.name, step.name, st["note"])

    def _fully_issued(self, step: StepConfig) -> bool:
        """Every trial of a running step has been issued (some may still run): nothing left to hand out."""
        st = self.step_state[step.name]
        return st["status"] == "running" and not st["queue"] and (st["exhausted"] or st["next_index"] >= st["total"])

    def _draining(self) -> list[StepConfig]:
        """Steps before the current one that still run trials (the next step started beside them)."""
        return [s for s in self.steps[:max(self.current, 0)] if self.step_state[s.name]["status"] == "running"]

    def _may_start_beside(self, k: int) -> bool:
        """Step ``k`` may start while earlier steps' last trials run: it is not a timing (exclusive) step,
        everything before it is issued, no exclusive trial runs, and every step it refers to has ended."""
        if k >= len(self.steps) or self.step_state[self.steps[k].name]["status"] != "waiting" or self.exclusive[
                self.steps[k].name]:
            return False  # a timing step starts when everything before it has ended
        running = [s for s in self.steps[:k] if self.step_state[s.name]["status"] == "running"]
        if not all(self._fully_issued(s) for s in running):
            return False
        if any(self.exclusive[u.step] for u in self.pending_units()):
            return False
        names = step_uses(self.steps[k])
        if "experiment" in names:
            return not running  # it may read any earlier step's files by path
        ended = {s.name for s in self.steps[:k] if self.step_state[s.name]["status"] in ("done", "skipped")}
        return names & {s.name for s in self.steps[:k]} <= ended

    def _advance(self) -> None:
        for step in self._draining():
            if self._step_done(step):
                self._mark_done(step)
        while self.current < len(self.steps):
            if self.current >= 0:
                step = self.steps[self.current]
                if self._step_done(step):
                    self._mark_done(step)
                elif self._may_start_beside(self.current + 1):
                    log.info("pipeline %s: step '%s' starts beside the last trial(s) of '%s' (it does not use their "
                             "results)", self.config.name, self.steps[self.current + 1].name, step.name)
                else:
                    return
            self.current += 1
            if self.current < len(self.steps) and self.step_state[self.steps[self.current].name]["status"] == "waiting":
                self._start(self.current)  # (a step kept done by a resume is not started again)

    def _out_dir(self, step: StepConfig, index: int, attempt: int) -> str:
        name = f"{index:03d}" + (f"-retry{attempt}" if attempt else "")
        return str(self.output_dir / step.name / name)

    def next_trial(self) -> tuple[int, TrialSpec] | None:
        """The next trial to run (parameter id, spec), or None if none can start now.

        In a step with ``batch`` > 1 the trial runs up to ``batch`` units: the spec is the first
        unit's, with every unit (the first included) in ``spec.batch``.
        """
        if self._held is not None:
            held, self._held = self._held, None
            return held
        first = self._next_unit()
        if first is None:
            return None
        param_id, spec = first
        size = self.step(spec.step).batch
        if size <= 1:
            return first
        members = [first]
        while len(members) < size:
            st = self.step_state[spec.step]
            if st["status"] != "running" or not (st["queue"] or (not st["exhausted"] and st["next_index"] < st["total"])):
                break
            nxt = self._next_unit(joining=True)
            if nxt is None:
                break
            if nxt[1].step != spec.step:  # the step ended meanwhile (skipped): that unit is the next trial
                self._held = nxt
                break
            members.append(nxt)
        if len(members) == 1:
            return first
        for pid, _ in members:
            self.units[pid].group = param_id
        spec.batch = [{"params": m.params, "out_dir": m.out_dir, "index": m.index, "attempt": m.attempt,
                       "inputs": m.inputs} for _, m in members]
        return param_id, spec

    def _next_unit(self, joining: bool = False) -> tuple[int, TrialSpec] | None:
        """The next unit of the running step as a one-unit trial spec (``joining``: into the batch being built)."""
        from facenas.nas.strategy import SearchExhausted

        self._advance()
        # a retry queued by an earlier step that is still running goes first, then the current step's trials
        step = next((s for s in self._draining() if self.step_state[s.name]["queue"]), None)
        if step is None:
            if self.current >= len(self.steps):
                return None
            step = self.steps[self.current]
        st = self.step_state[step.name]
        if st["status"] != "running":
            return None
        if self.exclusive[step.name] and not joining and self.pending_units():
            return None  # a measurement runs alone: after every running trial, one at a time
        if st["queue"]:
            index, attempt, sample = st["queue"].pop(0)
        elif not st["exhausted"] and st["next_index"] < st["total"]:
            index, attempt, sample = st["next_index"], 0, None
            if step.name in self.strategies:
                try:
                    sample = self.strategies[step.name].ask()
                except SearchExhausted as exc:
                    log.info("pipeline %s: step '%s': %s", self.config.name, step.name, exc)
                    st["exhausted"] = True
                    self._advance()
                    return self._next_unit() if self.current < len(self.steps) else None
            st["next_index"] += 1
        else:
            return None
        try:
            params = self.resolve(step.params, self._context(step, index, sample))
        except FacenasError as exc:
            self._skip(step, f"trial {index}: {exc}")
            self._advance()
            return self._next_unit() if self.current < len(self.steps) else None
        if sample is not None:
            params.setdefault("sample", dict(sample))
        sc = step.sample_config()
        space = sc.space if sc else step.space
        space_config = dict(sc.space_config if sc else step.space_config)
        param_id = self.next_param_id
        self.next_param_id += 1
        unit = Unit(param_id=param_id, step=step.name, index=index, attempt=attempt,
                    out_dir=self._out_dir(step, index, attempt), params=params,
                    sample=dict(sample) if sample is not None else None)
        self.units[param_id] = unit
        spec = TrialSpec(stage=step.stage, params=params, out_dir=unit.out_dir, step=step.name, index=index,
                         attempt=attempt, space=space, space_config=space_config if space else None,
                         role=self.roles[step.name],
                         inputs=self.referenced_paths(step.params, params) or None)
        return param_id, spec

    def unit_of_trial(self, trial_job_id: str) -> Unit | None:
        """The unit an NNI trial really ran: by its reported metrics, else by its ``params.json``."""
        for unit in self.units.values():
            if unit.trial_job_id == trial_job_id:
                return unit
        for unit in self.units.values():
            if unit.status != ISSUED:
                continue
            path = Path(unit.out_dir) / "params.json"
            if path.is_file():
                try:
                    if (read_json(path).get("nni") or {}).get("trial_id") == trial_job_id:
                        return unit
                except (OSError, json.JSONDecodeError, AttributeError):
                    continue
        return None

    def on_final(self, param_id: int, metrics: Any) -> None:
        unit = self.units.get(param_id)
        if unit is None:
            log.warning("final metric for unknown parameter id %s ignored", param_id)
            return
        unit.metrics = dict(metrics) if isinstance(metrics, Mapping) else {"default": metrics}
        if "objective" in unit.metrics:  # a non-candidate trial: NNI got NaN, the pipeline uses the stage's own
            unit.metrics["default"] = unit.metrics.pop("objective")

    def on_end(self, param_id: int, succeeded: bool, nni_status: str | None = None, trial_job_id: str | None = None) -> None:
        """A trial ended; a failure is retried (``retries``) or recorded, and the pipeline goes on."""
        unit = self.units.get(param_id)
        if unit is None:
            log.warning("end of unknown parameter id %s ignored", param_id)
            return
        if unit.status != ISSUED:
            return
        if unit.group is not None:  # a batch: each unit ends as its own result.json says
            for member in [u for u in self.units.values() if u.group == unit.group and u.status == ISSUED]:
                record = self._record_from_file(member)
                if record is not None:
                    member.metrics = dict(record.get("metrics") or {}) or None
                    ok = record.get("status") == "SUCCEEDED"
                else:  # not readable here (no shared storage): the trial's status; its final is the best unit's
                    member.metrics = None
                    ok = succeeded
                self._end_unit(member, ok, "SUCCEEDED" if ok else ("FAILED" if succeeded else nni_status), trial_job_id)
            self._advance()
            return
        self._end_unit(unit, succeeded, nni_status, trial_job_id)
        self._advance()

    def end_from_records(self, param_id: int, trial_job_id: str | None = None) -> bool:
        """End a still-running trial as succeeded when its ``result.json`` files already say so.

        A pipeline trial reports its final result after writing its record (adapters/nni/trial.py),
        so on that report the unit (every unit of a batch) is complete; the advisor ends it then
        and the next trials need not wait for NNI to notice the process has exited. False (nothing
        changed) when a record is missing, unreadable (no shared storage) or not ``SUCCEEDED``:
        the trial then ends the usual way, on NNI's trial-end event.
        """
        unit = self.units.get(param_id)
        if unit is None or unit.status != ISSUED:
            return False
        if unit.group is None:
            record = self._record_from_file(unit)
            if record is None or record.get("status") != "SUCCEEDED":
                return False
        elif any(self._record_from_file(m) is None for m in self.units.values()
                 if m.group == unit.group and m.status == ISSUED):
            return False
        self.on_end(param_id, True, "SUCCEEDED", trial_job_id)
        return True

    def _end_unit(self, unit: Unit, succeeded: bool, nni_status: str | None, trial_job_id: str | None) -> None:
        unit.nni_status, unit.trial_job_id = nni_status, trial_job_id or unit.trial_job_id
        step = self.step(unit.step)
        st = self.step_state[step.name]
        if succeeded:
            unit.status = SUCCEEDED
            if unit.metrics is None:
                unit.metrics = self._metrics_from_file(unit)
        else:
            unit.status = FAILED
            log.warning("pipeline %s: trial %s/%d (attempt %d) %s", self.config.name, step.name, unit.index,
                        unit.attempt, nni_status or "failed")
            if unit.attempt < step.retries:
                st["queue"].append((unit.index, unit.attempt + 1, unit.sample))
                return
        strategy = self.strategies.get(step.name)
        if strategy is not None and unit.sample is not None:
            if succeeded and unit.metrics and "default" in unit.metrics:
                strategy.tell(unit.sample, unit.metrics)
            else:
                strategy.tell(unit.sample, {"default": -math.inf, "error": nni_status or "failed"})
            st["strategy_state"] = strategy.state_dict()

    @staticmethod
    def _record_from_file(unit: Unit) -> dict[str, Any] | None:
        try:
            record = read_json(Path(unit.out_dir) / "result.json")
        except (OSError, json.JSONDecodeError):
            return None
        return record if isinstance(record, dict) else None

    @staticmethod
    def _metrics_from_file(unit: Unit) -> dict[str, Any] | None:
        path = Path(unit.out_dir) / "result.json"
        try:
            return dict(read_json(path).get("metrics") or {})
        except (OSError, json.JSONDecodeError, AttributeError):
            return None

    # -- persistence and resume ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        for name, strategy in self.strategies.items():
            self.step_state[name]["strategy_state"] = strategy.state_dict()
        return {
            "format": "facenas.pipeline_state/1",
            "name": self.config.name,
            "experiment_id": self.experiment_id,
            "status": self.status(),
            "config": self.config.to_dict(),
            "next_param_id": self.next_param_id,
            "current": self.current,
            "steps": [{"name": s.name, "stage": s.stage, **self.step_state[s.name]} for s in self.steps],
            "units": [dataclasses.asdict(u) for u in sorted(self.units.values(), key=lambda u: u.param_id)],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved run; the configured steps may differ from the saved ones (a revised experiment file).

        A step keeps its saved state and trials when its name, stage and what decides its results
        (:data:`RESULT_FIELDS`) are unchanged and every step it refers to is kept too; a changed step
        (or one that uses a changed step's results) runs again from scratch, its earlier trials'
        folders moved to ``replaced/`` (out of the run's records), with a log line saying so. New
        steps wait their turn; removed steps' trials are moved out the same way. The run goes on
        at the first configured step that is not done.
        """
        if state.get("format") != "facenas.pipeline_state/1":
            raise FacenasError(f"not a facenas pipeline state (format {state.get('format')!r})")
        names = [s["name"] for s in state["steps"]]
        if not set(names) & {s.name for s in self.steps}:
            raise FacenasError(f"saved pipeline has steps {names}, the configured one {[s.name for s in self.steps]}: "
                               "no step in common")
        saved_steps = {s["name"]: s for s in state["steps"]}
        saved_configs = {s.get("name"): s for s in (state.get("config") or {}).get("steps", []) if isinstance(s, Mapping)}
        units = [Unit(**u) for u in state["units"]]
        self.next_param_id = int(state["next_param_id"])
        kept = self._reconcile(saved_steps, saved_configs, units)
        self.units = {u.param_id: u for u in units if u.step in kept}
        unfinished = [k for k, s in enumerate(self.steps) if self.step_state[s.name]["status"] != "done"]
        first = unfinished[0] if unfinished else len(self.steps)
        for k in unfinished[1:]:  # a kept running step behind a new one is started again when its turn comes
            if self.step_state[self.steps[k].name]["status"] == "running":
                self.step_state[self.steps[k].name]["status"] = "waiting"
        running = first < len(self.steps) and self.step_state[self.steps[first].name]["status"] == "running"
        self.current = first if running or first >= len(self.steps) else first - 1  # _advance starts a waiting one
        self.strategies = {}
        if running:
            step = self.steps[self.current]
            if step.sample is not None:
                self._start_strategy_only(step)
        self._interrupted = {u.param_id for u in self.units.values() if u.status == ISSUED}

    def _reconcile(self, saved_steps: Mapping[str, Mapping[str, Any]], saved_configs: Mapping[str, Mapping[str, Any]],
                   units: list[Unit]) -> set[str]:
        """Install the saved state of each configured step that is unchanged; the names of the kept steps."""
        kept: set[str] = set()
        rerun: set[str] = set()
        for step in self.steps:
            saved = saved_steps.get(step.name)
            if saved is None or saved.get("status") == "waiting":
                continue  # new, or not started: it runs when its turn comes
            mine = [u for u in units if u.step == step.name]
            reason = None
            old = saved_configs.get(step.name)
            if old is not None and _result_fields(old) != _result_fields(step.to_dict()):
                changed = [f for f in RESULT_FIELDS if _result_fields(old)[f] != _result_fields(step.to_dict())[f]]
                reason = f"its {', '.join(changed)} changed since the saved run"
            elif saved.get("stage", step.stage) != step.stage:
                reason = "its stage changed since the saved run"
            elif step_uses(step) & rerun:
                uses = sorted(step_uses(step) & rerun)
                reason = f"it uses the results of re-run step(s) {uses}"
            elif saved.get("status") == "skipped":
                reason = "it was skipped in the saved run"
            if reason is not None:  # (a running step may have left a folder before its trial was recorded)
                rerun.add(step.name)
                moved = self._move_aside(step.name)
                log.info("pipeline %s: step '%s' runs again: %s (%d earlier trial(s)%s)", self.config.name,
                         step.name, reason, len(mine), f"; its folder moved to {moved}" if moved else "")
                continue
            st = {k: v for k, v in saved.items() if k not in ("name", "stage")}
            st["queue"] = [tuple(q) for q in st.get("queue", [])]
            self.step_state[step.name] = st
            kept.add(step.name)
            done = sum(1 for u in mine if u.status == SUCCEEDED)
            log.info("pipeline %s: step '%s' unchanged: kept (%s, %d finished trial(s))", self.config.name, step.name,
                     st.get("status"), done)
        for name in sorted({u.step for u in units} - {s.name for s in self.steps}):
            moved = self._move_aside(name)
            log.info("pipeline %s: step '%s' is no longer in the pipeline: its trials are left out of the run%s",
                     self.config.name, name, f" (moved to {moved})" if moved else "")
        return kept

    def _move_aside(self, step: str) -> str | None:
        """Move a step's trial folders to ``replaced/<step>.<n>`` (not a record of this run any more)."""
        src = self.output_dir / step
        if not src.is_dir():
            return None
        n = 1
        while (self.output_dir / "replaced" / f"{step}.{n}").exists():
            n += 1
        dst = self.output_dir / "replaced" / f"{step}.{n}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dst)
        return str(dst)

    def _start_strategy_only(self, step: StepConfig) -> None:
        from facenas.nas.space import create_space
        from facenas.nas.strategy import STRATEGIES

        sc = step.sample_config()
        assert sc is not None
        strategy = STRATEGIES.create(sc.strategy, space=create_space(sc.space, **sc.space_config), seed=sc.seed,
                                     **sc.strategy_args)
        saved = self.step_state[step.name]["strategy_state"]
        if saved is not None:
            strategy.load_state_dict(saved)
        self.strategies[step.name] = strategy

    def keep_resumed(self, param_ids: list[int]) -> None:
        """NNI re-queued these interrupted trials on resume: wait for them instead of re-issuing."""
        self._interrupted -= set(param_ids)

    def retry_failed(self) -> list[str]:
        """Run again the failed trials of finished steps that no started step has used; the steps retried.

        A trial index of a ``done`` step without a successful attempt is queued once more (its next
        attempt, in its own folder), and the run goes back to the first such step; steps after it that
        had started go on from where they were when their turn comes. A step whose results a started
        later step refers to is not retried (that step would have to run again): a log line says so.
        """
        # a step "used" results only when it issued a trial: one skipped, or started without a trial, used none
        started = {u.step for u in self.units.values()}
        retried: list[str] = []
        for k, step in enumerate(self.steps):
            st = self.step_state[step.name]
            if st["status"] != "done":
                continue
            mine = [u for u in self.units.values() if u.step == step.name]
            ok = {u.index for u in mine if u.status == SUCCEEDED}
            failed: dict[int, Unit] = {}
            for u in mine:
                if u.status == FAILED and u.index not in ok and (u.index not in failed or u.attempt > failed[u.index].attempt):
                    failed[u.index] = u
            if not failed:
                continue
            users = [s.name for s in self.steps[k + 1:] if s.name in started
                     and step.name in step_uses(s)]
            if users:
                log.warning("pipeline %s: step '%s' has %d failed trial(s) but is not retried: step(s) %s used its "
                            "results already", self.config.name, step.name, len(failed), users)
                continue
            st["queue"].extend((u.index, u.attempt + 1, u.sample) for u in sorted(failed.values(), key=lambda u: u.index))
            st["status"], st["note"] = "running", f"retrying {len(failed)} failed trial(s)"
            retried.append(step.name)
            log.info("pipeline %s: step '%s': retrying %d failed trial(s) (index %s)", self.config.name, step.name,
                     len(failed), sorted(failed))
        if retried:
            first = min(k for k, s in enumerate(self.steps) if s.name in retried)
            for s in self.steps[first + 1:]:  # started again, from where they were, when their turn comes
                if s.name in retried:
                    continue
                if s.name not in started:  # resolved again from the retried results (it may have been skipped)
                    self.step_state[s.name] = _waiting_state()
                elif self.step_state[s.name]["status"] == "running":
                    self.step_state[s.name]["status"] = "waiting"
            self.current = first
        return retried

    def reissue_interrupted(self) -> list[int]:
        """Trials that were running when the experiment stopped and that NNI did not re-queue: run again."""
        lost = sorted(self._interrupted)
        for pid in lost:
            unit = self.units[pid]
            unit.status = LOST
            self.step_state[unit.step]["queue"].append((unit.index, unit.attempt + 1, unit.sample))
        self._interrupted = set()
        if lost:
            log.info("pipeline %s: re-running %d trial(s) interrupted by the stop", self.config.name, len(lost))
        return lost


def _waiting_state() -> dict[str, Any]:
    """A step's state before it starts."""
    return {"status": "waiting", "note": None, "total": None, "items": None, "next_index": 0, "queue": [],
            "exhausted": False, "strategy_state": None}


def run_pipeline_locally(config: PipelineConfig | Mapping[str, Any], output_dir: str | Path,
                         retry_failed: bool = False, concurrency: int = 1) -> PipelineScheduler:
    """Run a pipeline in this process, one trial after another, without NNI (debugging, tests).

    Trials run through the same :func:`facenas.adapters.nni.trial.run_trial` as under NNI (their
    ``nni.report_*`` calls only log), leave the same files, and the summary is written at the end.
    Resumable: when ``output_dir`` holds the ``advisor_state.json`` of an earlier run of the same
    pipeline, finished trials are kept and the one that was running is run again in its own folder
    (``engine.train`` continues from the checkpoint it left there). The experiment file may have been
    revised meanwhile: unchanged steps keep their trials, changed ones run again
    (:meth:`PipelineScheduler.load_state_dict`). ``retry_failed``: failed trials of finished steps
    run again first (:meth:`PipelineScheduler.retry_failed`). ``concurrency`` > 1: up to that many trials
    at a time, each in its own process (:mod:`facenas.adapters.nni.local_workers`), as NNI's
    ``trialConcurrency``; 1 runs them one after another in this process.
    """
    from facenas.adapters.nni.results import write_summary
    from facenas.adapters.nni.trial import run_trial
    from facenas.utils.io import write_json

    cfg = config if isinstance(config, PipelineConfig) else PipelineConfig.from_dict(dict(config), source="pipeline")
    out = Path(output_dir)
    sched = PipelineScheduler(cfg, out, experiment_id="local")
    _resume_local(sched, out / "advisor_state.json")
    if retry_failed:
        sched.retry_failed()

    def save() -> None:  # after every start and end: a run killed mid-trial resumes that trial (and a retry)
        write_json(out / "advisor_state.json", sched.state_dict())

    def ended(param_id: int, code: int) -> None:
        metrics = sched._metrics_from_file(sched.units[param_id])
        if metrics is not None:
            sched.on_final(param_id, metrics)
        sched.on_end(param_id, code == 0, "SUCCEEDED" if code == 0 else "FAILED", f"local-{param_id}")
        save()

    if concurrency > 1:
        from facenas.adapters.nni.local_workers import run_concurrently

        run_concurrently(sched, out, concurrency, ended, started=save)
    while not sched.finished:
        nxt = sched.next_trial()
        if nxt is None and sched.finished:  # the steps left were all skipped (what they need failed)
            break
        if nxt is None:  # pragma: no cover - sequential runs end every trial before asking again
            raise FacenasError(f"pipeline '{cfg.name}' is stuck: no trial to run and {len(sched.pending_units())} pending")
        param_id, spec = nxt
        save()
        ended(param_id, run_trial(spec, spec.out_dir or out / "trials" / str(param_id),
                                  {"trial_id": f"local-{param_id}", "local": True}))
    save()
    write_summary(out, "local")
    return sched


def _resume_local(sched: PipelineScheduler, state_path: Path) -> None:
    """Load a local run's saved state; the interrupted trial goes first, same folder (its attempt is kept)."""
    if not state_path.is_file():
        return
    state = read_json(state_path)
    if state.get("name") != sched.config.name:
        raise ConfigError(f"{state_path} belongs to pipeline '{state.get('name')}', not '{sched.config.name}'; "
                           "give another --output folder")
    saved_seed = (state.get("config") or {}).get("seed")
    if saved_seed is not None and saved_seed != sched.config.seed:
        raise ConfigError(f"{state_path} holds a run with seed {saved_seed}, not {sched.config.seed}; "
                          "give another --output folder for another seed")
    sched.load_state_dict(state)
    interrupted = sorted(sched._interrupted)
    for pid in reversed(interrupted):
        unit = sched.units[pid]
        unit.status = LOST
        sched.step_state[unit.step]["queue"].insert(0, (unit.index, unit.attempt, unit.sample))
    sched._interrupted = set()
    done = sum(1 for u in sched.units.values() if u.status == SUCCEEDED)
    log.info("pipeline %s: resumed from %s (%d trial(s) done, %d to run again)", sched.config.name, state_path, done,
             len(interrupted))
