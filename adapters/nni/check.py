"""``facenas nni check FILE``: validate an experiment file without running anything.

What is checked, each problem one line ``FILE: where: what (fix)``:

1. the YAML and NNI's v2 fields with :func:`facenas.adapters.nni.launch.experiment_problems`, the
   one validator ``facenas nni create`` raises the first problem of (unknown or mistyped fields, a
   missing search-space file, the training service, the tuner's name, ``trialCodeDirectory``, then
   NNI's own ``ExperimentConfig``: e.g. GPU trials on the local service without ``useActiveGpu``;
   relative paths from the file's folder);
2. the tuner / advisor: a facenas advisor (``FacenasPipeline`` / ``FacenasSearch``) or one of NNI's
   built-in tuners, whose ``trialCommand`` must then name a ``--stage``;
3. the steps (the advisor's ``classArgs``, after ``variables`` are substituted): each step's
   stage exists in ``STAGES``; each space (a step's ``space`` or its ``sample``) builds with its
   ``space_config``; each ``${STEP...}`` reference names an earlier step (``${item}`` only in a
   ``foreach`` step); the config a training stage would build (``config``: a recipe path, from
   ``trialCodeDirectory``, or a dict, plus overrides) loads and validates as that stage's config
   class (``TrainConfig`` for ``engine.train`` / ``tnas.train`` ...); any other ``.py`` recipe
   path in the parameters exists; a stage's ``nproc_per_node`` (torchrun processes) is at most
   ``trialGpuNumber``. A ``${...}`` value exists only at run time: it stands in as
   :data:`PLACEHOLDER` (a whole ``${item...}`` of a literal foreach as the item's value), and a
   whole reference in a field a typed config refuses a string for (e.g. enas.search's
   ``reward.target_ms: ${lut.result.p20_ms}``, a float) is left out while the rest is validated
   (the refusal is ``TypedConfig.validate``'s :class:`~facenas.config.FieldTypeError`, which names
   the field and the value; its message's words are not read); the stage validates the resolved
   value when it runs.

Data paths are not required to exist (they are the workers', see the GPU files' ``variables``).
Nothing is trained, no NNI process starts; the registries and config classes are imported.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from facenas.config import refused_field
from facenas.errors import FacenasError

_REF = re.compile(r"\$\{([^${}]+)\}")
#: stands in for a ``${...}`` value while a config is validated (the value exists only at run time)
PLACEHOLDER = "/facenas-check/reference"


class CheckFailed(FacenasError):
    """An experiment file has problems; the message is one line per problem."""


@dataclasses.dataclass
class CheckReport:
    path: str
    problems: list[str]
    steps: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_experiment_file(path: str | os.PathLike) -> CheckReport:
    """Every problem of the experiment file at ``path`` (an empty list when it is sound)."""
    src = Path(path)
    problems: list[str] = []

    def bad(where: str, what: str) -> None:
        problems.append(f"{src}: {where}: {what}")

    data = _load(src, bad)
    if data is None:
        return CheckReport(str(src), problems, [])
    from facenas.adapters.nni.launch import experiment_problems

    problems += experiment_problems(data, src, base=src.parent)  # NNI's fields: the one validator nni create uses too
    code_dir = (src.parent / str(data.get("trialCodeDirectory") or ".")).resolve()
    tuner = data.get("tuner") or data.get("advisor")
    steps: list[str] = []
    if not isinstance(tuner, Mapping) or not tuner.get("name"):
        if not (isinstance(tuner, Mapping) and tuner.get("className")):  # a custom tuner is NNI's business
            bad("tuner", "missing; name FacenasPipeline / FacenasSearch or an NNI tuner (tuner: {name: TPE})")
        return CheckReport(str(src), problems, steps)
    from facenas.adapters.nni.pipeline import ALGORITHMS, config_from_tuner

    name = str(tuner["name"])
    if name.lower() not in {a["builtinName"].lower() for a in ALGORITHMS}:
        if any(p.startswith(f"{src}: tuner.name:") or p.startswith(f"{src}: advisor.name:") for p in problems):
            return CheckReport(str(src), problems, steps)  # an unknown name: said above
        stage = re.search(r"--stage\s+(\S+)", str(data.get("trialCommand") or ""))
        if stage is None:
            bad("trialCommand", f"with NNI's tuner '{name}' the trial command must name the stage "
                                "(python -m facenas.adapters.nni.trial --stage STAGE --space SPACE)")
        else:
            _check_stage_name(stage.group(1), "trialCommand --stage", bad)
        return CheckReport(str(src), problems, steps)
    try:
        pipeline = config_from_tuner(name, tuner.get("classArgs") or tuner.get("class_args"))
        step_configs = pipeline.step_configs("tuner.classArgs")
    except FacenasError as exc:
        bad("tuner.classArgs", str(exc))
        return CheckReport(str(src), problems, steps)
    for i, step in enumerate(step_configs):
        where = f"step {i} '{step.name}'"
        steps.append(f"{step.name}: {step.stage}")
        if not _check_stage_name(step.stage, f"{where} stage", bad):
            continue
        for space, space_config, field in _spaces_of(step):
            _check_space(space, space_config, f"{where} {field}", bad)
        nproc = step.params.get("nproc_per_node")
        gpus = data.get("trialGpuNumber") or 0
        if isinstance(nproc, int) and gpus and nproc > gpus:
            bad(f"{where} params.nproc_per_node", f"{nproc} torchrun processes but trialGpuNumber is {gpus}: "
                                                  "one process per GPU, raise trialGpuNumber to match")
        # a literal foreach list: the parameters of each item (its literal values stand in for ${item...})
        items = step.foreach if isinstance(step.foreach, list) and step.foreach else [None]
        for k, item in enumerate(items):
            before = len(problems)
            with _cwd(code_dir):
                _check_stage_params(step.stage, _placeholders(step.params, item),
                                    f"{where} params" + (f" (foreach item {k})" if item is not None else ""), code_dir, bad)
            if len(problems) > before:
                break  # one item's problem is enough; the others share the parameters
    return CheckReport(str(src), problems, steps)


# -- the parts -------------------------------------------------------------------------------------------
def _load(src: Path, bad: Callable[[str, str], None]) -> dict[str, Any] | None:
    from facenas.adapters.nni.launch import load_yaml

    try:
        return load_yaml(src)
    except FacenasError as exc:
        bad("file", str(exc).replace(f"{src}: ", ""))
        return None


def _check_stage_name(stage: str, where: str, bad: Callable[[str, str], None]) -> bool:
    from facenas.nas.stages import STAGES

    try:
        STAGES.get(stage)
        return True
    except FacenasError as exc:
        bad(where, _one_line(exc))
    except KeyError:
        bad(where, f"unknown stage '{stage}'; known: {sorted(STAGES.names())}")
    return False


def _spaces_of(step: Any) -> Iterator[tuple[str, dict[str, Any], str]]:
    if step.sample is not None:
        sample = step.sample_config()
        yield sample.space, dict(sample.space_config), "sample.space"
    if step.space:
        yield step.space, dict(step.space_config), "space"


def _check_space(name: str, config: Mapping[str, Any], where: str, bad: Callable[[str, str], None]) -> None:
    from facenas.nas.space import create_space

    try:
        create_space(name, **dict(config))
    except FacenasError as exc:
        bad(where, f"space '{name}' with space_config {dict(config)} does not build: {_one_line(exc)}")
    except TypeError as exc:
        bad(where, f"space '{name}': space_config {dict(config)} has a field the space does not take: {_one_line(exc)}")


def _placeholders(value: Any, item: Any = None) -> Any:
    """``value`` with every ``${...}`` replaced by :data:`PLACEHOLDER` (its run-time value is unknown here);
    a whole ``${seed}`` / ``${index}`` is an integer at run time, so it stands in as 0, and a whole
    ``${item}`` / ``${item.KEY}`` of a literal foreach ``item`` as that item's value (when it holds no reference)."""
    if isinstance(value, str):
        if value.strip() in ("${seed}", "${index}"):
            return 0
        literal = _item_value(value.strip(), item)
        if literal is not None:
            return literal
        return _REF.sub(PLACEHOLDER, value) if "${" in value else value
    if isinstance(value, Mapping):
        return {k: _placeholders(v, item) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v, item) for v in value]
    return value


def _item_value(text: str, item: Any) -> Any:
    """The literal value a whole ``${item...}`` reference takes for ``item``, or None."""
    if item is None or not (text.startswith("${item") and text.endswith("}")) or text.count("${") != 1:
        return None
    path = text[2:-1].strip().split(".")
    if path[0] != "item":
        return None
    value = item
    for key in path[1:]:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return None if "${" in json.dumps(value) else value


def _check_stage_params(stage: str, params: dict[str, Any], where: str, code_dir: Path,
                        bad: Callable[[str, str], None]) -> None:
    for key, value in _path_like(params):
        if PLACEHOLDER not in value and not Path(value).exists():
            bad(f"{where}.{key}", f"{value!r} does not exist (relative to trialCodeDirectory {code_dir})")
    from facenas.nas.stages import STAGES

    validate = getattr(STAGES.get(stage), "check_params", None)  # the stage's own dry run, if it has one
    if validate is None:
        return
    config = params.get("config")
    if isinstance(config, str) and not Path(config).is_file():
        return  # reported above
    # a whole reference stands in as PLACEHOLDER, a string; where a typed config refuses it (a float, an int ...)
    # the field is left out and the rest validated again: its resolved value is validated when the stage runs
    for _ in range(_count_placeholders(params) + 1):
        try:
            with tempfile.TemporaryDirectory(prefix="facenas-check-") as scratch:
                validate(dict(params), scratch)
        except FacenasError as exc:
            refused = refused_field(exc)  # TypedConfig.validate's refusal, by field (not by its message's text)
            if refused is not None and refused.value == PLACEHOLDER and _without_reference(params, refused.field):
                continue
            bad(where, f"the {stage} config does not load: {_one_line(exc)}")
        except (TypeError, ValueError, KeyError) as exc:
            bad(where, f"the {stage} config does not load: {type(exc).__name__}: {_one_line(exc)}")
        return


def _count_placeholders(value: Any) -> int:
    if isinstance(value, Mapping):
        return sum(_count_placeholders(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_placeholders(v) for v in value)
    return int(value == PLACEHOLDER)


def _without_reference(params: Any, field: str) -> bool:
    """Remove (in place) every ``field: PLACEHOLDER`` of ``params``, nested too; whether there was one."""
    found = False
    if isinstance(params, Mapping):
        if params.get(field) == PLACEHOLDER:
            del params[field]
            found = True
        for v in params.values():
            found = _without_reference(v, field) or found
    elif isinstance(params, list):
        for v in params:
            found = _without_reference(v, field) or found
    return found


def _path_like(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(field, value)`` of the strings that name recipes: ``*.py`` anywhere, any ``config`` string.

    JSON files (latency tables, architectures) are often built before the run or by an earlier
    step, so they are not required to exist here.
    """
    if isinstance(value, str):
        if (value.endswith(".py") or prefix.rsplit(".", 1)[-1] == "config") and "\n" not in value:
            yield prefix or "value", value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _path_like(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _path_like(v, f"{prefix}[{i}]")


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path if path.is_dir() else old)
    try:
        yield
    finally:
        os.chdir(old)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 400 else text[:397] + "..."
