"""Launching facenas experiments on NNI, on loopback, and talking to them.

What ``facenas nni create`` adds to ``nnictl create`` (everything else is plain NNI):

1. **Loopback only.** NNI 3.0's manager (a Node.js web server: portal + REST API without
   authentication) listens on all interfaces and has no option to change that. The launcher
   loads ``loopback.js`` into it (``NODE_OPTIONS=--require ...``), which makes its servers bind
   ``127.0.0.1`` (or ``$FACENAS_NNI_BIND_HOST``), and prints only the loopback URL; and
   ``poll.js``, which makes the manager look for ended trials every 0.1 s instead of 0.5 s
   (``$FACENAS_NNI_POLL_S``), as each round of dependent trials waits for that look.
2. **Our search space in the portal.** For a facenas advisor the search space is generated from
   the space the pipeline samples (:func:`facenas.adapters.nni.space.search_space_json`).
3. **The right Python.** The trial command's ``python`` resolves to the interpreter running
   facenas (its folder goes first on ``PATH``), so trials import this facenas.
4. **Checked before start.** The pipeline of a facenas advisor is validated (steps, stages,
   references' syntax) before the experiment starts, so mistakes fail here, not in the
   dispatcher's log (the manager process, started early to boot meanwhile, is removed with its
   folder).
5. **Shared outputs for more than one machine.** With NNI's ``remote`` training service trials run
   on other machines and read earlier steps' artefacts by absolute path; ``create`` refuses such an
   experiment unless the output root is given explicitly as an absolute path
   (``--output-root`` / ``$FACENAS_NNI_OUTPUT``, or the pipeline's ``output_dir``) that every
   machine mounts (NFS, NNI's ``sharedStorage``) -- see :func:`check_shared_output`.
6. **Isolation on request.** ``home`` / ``config_dir`` / ``output_root`` set ``HOME`` (NNI's
   manifest and default working directory), ``NNI_CONFIG_DIR`` (registered algorithms) and
   ``FACENAS_NNI_OUTPUT`` (facenas outputs) for the NNI processes: tests use this to stay in a
   temporary folder.

7. **Started in this process, quickly.** What ``nnictl create`` does (NNI 3.0: start the manager
   detached, record it in NNI's manifest, post the config) happens in the ``facenas nni create``
   process (:func:`create`): no second interpreter importing ``nni`` (1.5-3 s here); the manager
   (Node.js) is started first and boots while facenas imports; its REST API is polled every 50 ms
   (nnictl: whole seconds). For a ``local`` experiment NNI's own Python processes (the dispatcher,
   the training service's version probe, run one after the other before the first trial) are forked
   from a server that has NNI's dependencies imported (:mod:`facenas.adapters.nni.warm`, python
   mode). ``create --wait`` returns when the experiment has ended (:func:`wait_done`).
   ``nnictl stop / resume / view`` work on such an experiment as on any.

nnictl itself (``register``, ``stop``, ``resume``, ``view``) runs as ``python -m nni.tools.nnictl.nnictl``
with this interpreter, with no stdin and ``CI=true`` (no prompts, no colour).
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Sequence

from facenas.adapters.nni.paths import BIND_HOST_ENV, OUTPUT_ENV
from facenas.errors import ConfigError, FacenasError

log = logging.getLogger(__name__)

LOOPBACK_JS = Path(__file__).with_name("loopback.js")
#: lowers NNI's manager trial poll (0.5 s) to $FACENAS_NNI_POLL_S (default 0.1 s): see poll.js
POLL_JS = Path(__file__).with_name("poll.js")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
TRIAL_MODULE = "facenas.adapters.nni.trial"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class NNICommandError(FacenasError):
    """An ``nnictl`` command failed; the message carries its output."""


# -- environment ------------------------------------------------------------------------------------
def nni_env(
    base: Mapping[str, str] | None = None,
    *,
    home: str | os.PathLike | None = None,
    config_dir: str | os.PathLike | None = None,
    output_root: str | os.PathLike | None = None,
    bind_host: str | None = None,
) -> dict[str, str]:
    """Environment for nnictl and the NNI processes it starts (see the module docstring)."""
    env = dict(os.environ if base is None else base)
    for shim in (LOOPBACK_JS, POLL_JS):
        require = f"--require {shim}"
        if " " in str(shim):
            raise FacenasError(f"the facenas install path {shim} contains a space, which NODE_OPTIONS cannot carry")
        if require not in env.get("NODE_OPTIONS", ""):
            env["NODE_OPTIONS"] = (env.get("NODE_OPTIONS", "") + " " + require).strip()
    if bind_host:
        env[BIND_HOST_ENV] = bind_host
    bin_dir = str(Path(sys.executable).parent)
    paths = env.get("PATH", "").split(os.pathsep)
    if not paths or paths[0] != bin_dir:
        env["PATH"] = os.pathsep.join([bin_dir, *[p for p in paths if p and p != bin_dir]])
    env["CI"] = "true"  # nnictl: no interactive prompts
    env.setdefault("PYTHONUNBUFFERED", "1")
    if home is not None:
        Path(home).mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(Path(home).resolve())
    if config_dir is not None:
        Path(config_dir).mkdir(parents=True, exist_ok=True)
        env["NNI_CONFIG_DIR"] = str(Path(config_dir).resolve())
    if output_root is not None:
        env[OUTPUT_ENV] = str(Path(output_root).resolve())
    return env


def bind_host(env: Mapping[str, str] | None = None) -> str:
    return (env or os.environ).get(BIND_HOST_ENV) or "127.0.0.1"


def nni_config_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where NNI keeps registered algorithms for ``env`` (NNI 3.0's rule, for this interpreter)."""
    env = env if env is not None else os.environ
    if env.get("NNI_CONFIG_DIR"):
        return Path(env["NNI_CONFIG_DIR"])
    if sys.prefix != sys.base_prefix or Path(sys.prefix, "conda-meta").is_dir():
        return Path(sys.prefix, "nni")
    return Path(env.get("HOME", os.path.expanduser("~"))) / ".config" / "nni"


def nnictl(args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120, check: bool = True,
           cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``nnictl ARGS`` with this interpreter, no stdin; raise :class:`NNICommandError` on failure."""
    cmd = [sys.executable, "-m", "nni.tools.nnictl.nnictl", *map(str, args)]
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, env=dict(env) if env is not None else nni_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise NNICommandError(f"nnictl {' '.join(map(str, args))} did not finish in {timeout} s") from exc
    proc.stdout = _ANSI.sub("", proc.stdout or "")
    proc.stderr = _ANSI.sub("", proc.stderr or "")
    failed = proc.returncode != 0 or re.search(r"^ERROR:", proc.stdout + proc.stderr, re.M)
    if check and failed:
        tail = (proc.stdout + proc.stderr).strip()[-3000:]
        raise NNICommandError(f"nnictl {' '.join(map(str, args))} failed (exit {proc.returncode}):\n{tail}")
    return proc


# -- algorithm registration ------------------------------------------------------------------------
def registered_algorithms(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """builtinName -> className of the algorithms registered for ``env``."""
    import yaml

    path = nni_config_dir(env) / "registered_algorithms.yml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {a["builtinName"]: a["className"] for kind in ("tuners", "advisors", "assessors") for a in data.get(kind) or []}


def register(env: Mapping[str, str] | None = None, force: bool = False) -> list[str]:
    """Register the facenas advisors with NNI (idempotent; wraps ``nnictl algo register --meta``).

    Returns the names that were (re-)registered; nothing when they already are, unless ``force``.
    """
    import yaml

    from facenas.adapters.nni.pipeline import ALGORITHMS

    env = dict(env) if env is not None else nni_env()
    have = registered_algorithms(env)
    todo = [a for a in ALGORITHMS if force or have.get(a["builtinName"]) != a["className"]]
    if not todo:
        return []
    with tempfile.TemporaryDirectory(prefix="facenas-nni-meta-") as tmp:
        meta = Path(tmp) / "facenas_algorithms.yml"
        meta.write_text(yaml.safe_dump({"algorithms": todo}, sort_keys=False), encoding="utf-8")
        nnictl(["algo", "register", "--meta", meta], env=env)
    have = registered_algorithms(env)
    missing = [a["builtinName"] for a in todo if have.get(a["builtinName"]) != a["className"]]
    if missing:
        raise NNICommandError(f"nnictl algo register did not register {missing} in {nni_config_dir(env)}")
    return [a["builtinName"] for a in todo]


# -- experiment config ------------------------------------------------------------------------------
def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FacenasError(f"experiment file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:  # its text spans several lines (a caret under the spot): keep one
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ConfigError(f"{p}:{where} not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected an NNI v2 experiment config (a mapping), got {type(data).__name__}")
    if "trainingServicePlatform" in data:
        raise ConfigError(f"{p}: NNI v1 config format; facenas experiment files use the v2 schema (trainingService: ...)")
    return data


#: NNI 3.0's training service platforms
PLATFORMS = ("local", "remote", "openpai", "aml", "dlc", "kubeflow", "frameworkcontroller")


def experiment_fields() -> list[str]:
    """The fields of NNI's experiment file (v2 schema), camelCase as written in the YAML."""
    import dataclasses

    from nni.experiment.config import ExperimentConfig

    return [re.sub(r"_(\w)", lambda m: m.group(1).upper(), f.name) for f in dataclasses.fields(ExperimentConfig)
            if not f.name.startswith("_")]


def algorithm_names(env: Mapping[str, str] | None = None) -> list[str]:
    """Tuner / advisor / assessor names NNI knows for ``env``: built-in (with aliases), registered, facenas's."""
    import yaml
    from nni.runtime.config import get_builtin_config_file

    from facenas.adapters.nni.pipeline import ALGORITHMS

    names = [a["builtinName"] for a in ALGORITHMS] + list(registered_algorithms(env))
    builtin = yaml.safe_load(get_builtin_config_file("builtin_algorithms.yml").read_text(encoding="utf-8")) or {}
    for entries in builtin.values():
        for algo in entries or []:
            names += [algo["builtinName"]] + ([algo["alias"]] if algo.get("alias") else [])
    return list(dict.fromkeys(names))


def _did_you_mean(value: str, known: Sequence[str]) -> str:
    import difflib

    lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(value.lower(), list(lower), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(lower[c]) for c in close)}?" if close else ""


def experiment_problems(cfg: Mapping[str, Any], source: str | os.PathLike, env: Mapping[str, str] | None = None,
                        base: str | os.PathLike | None = None) -> list[str]:
    """Every problem of an experiment config at NNI's level, one line ``SOURCE: field: what (fix)`` each.

    The one validator of NNI's fields: ``facenas nni create`` raises the first problem
    (:func:`validate_experiment`), ``facenas nni check`` lists them all (with the facenas checks of
    the steps, :mod:`facenas.adapters.nni.check`). nnictl would answer a missing search space,
    ``trialConcurrency: -3`` or a misspelt field with a Python traceback, and a misspelt tuner name
    only later, as an experiment in ERROR. ``base``: the folder relative paths are read from (the
    file's own; ``None``: the paths are already absolute, as :func:`prepare_config` leaves them).
    NNI's own config class checks the rest, only when these checks found nothing (its messages
    would repeat them).
    """
    from facenas.adapters.nni.pipeline import ALGORITHMS

    src = str(source)
    problems: list[str] = []
    root = Path(base) if base is not None else None

    def bad(field: str, why: str) -> None:
        problems.append(f"{src}: {field}: {why}")

    def resolve(value: Any) -> Path:
        path = Path(os.path.expanduser(str(value)))
        return root / path if root is not None and not path.is_absolute() else path

    for key in ("trialCommand", "trialConcurrency", "trainingService"):
        if key not in cfg:
            bad(key, "missing (NNI requires it)")
    if "trialCommand" in cfg and (not isinstance(cfg["trialCommand"], str) or not cfg["trialCommand"].strip()):
        bad("trialCommand", "empty; e.g. python -m facenas.adapters.nni.trial")
    for field in ("trialConcurrency", "maxTrialNumber"):  # other types: NNI's own check names them
        value = cfg.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            bad(field, f"{value!r} is not a positive integer")
    if cfg.get("trialCodeDirectory") is not None and not resolve(cfg["trialCodeDirectory"]).is_dir():
        bad("trialCodeDirectory", f"{cfg['trialCodeDirectory']!r} is not a folder"
            + (f" (relative to {root})" if root is not None else ""))
    services = cfg.get("trainingService")
    for service in (services if isinstance(services, list) else [services]) if "trainingService" in cfg else []:
        if not isinstance(service, Mapping) or "platform" not in service:
            bad("trainingService", f"expected a mapping with a 'platform' ({', '.join(PLATFORMS)}), got {service!r}")
        elif service["platform"] not in PLATFORMS:
            bad("trainingService.platform", f"{service['platform']!r} is not one of NNI's training services "
                f"{list(PLATFORMS)}{_did_you_mean(str(service['platform']), PLATFORMS)}")
    tuner = cfg.get("tuner") or cfg.get("advisor")
    facenas_names = {a["builtinName"].lower() for a in ALGORITHMS}
    facenas_tuner = isinstance(tuner, Mapping) and str(tuner.get("name", "")).lower() in facenas_names
    if cfg.get("searchSpace") is not None and cfg.get("searchSpaceFile"):
        bad("searchSpace", "both searchSpace and searchSpaceFile are set; keep one")
    elif cfg.get("searchSpace") is None and not facenas_tuner:  # facenas nni create generates a facenas advisor's
        space_file = cfg.get("searchSpaceFile")
        if not space_file:
            bad("searchSpaceFile", "missing: a tuner needs searchSpaceFile (or an inline searchSpace); "
                "facenas nni space NAME --output FILE writes one")
        elif not resolve(space_file).is_file():
            bad("searchSpaceFile", f"{space_file} does not exist")
        else:
            try:
                json.loads(resolve(space_file).read_text(encoding="utf-8"))
            except ValueError as exc:
                bad("searchSpaceFile", f"{space_file} is not JSON ({exc})")
    known: list[str] | None = None
    for kind in ("tuner", "advisor", "assessor"):
        algo = cfg.get(kind)
        if algo is None:
            continue
        if not isinstance(algo, Mapping):
            bad(kind, f"expected a mapping with a 'name', got {algo!r}")
            continue
        name = algo.get("name")
        if name is None:
            if not algo.get("className"):
                bad(kind, "needs a 'name' (a built-in or registered algorithm) or a 'className'")
            continue
        known = known if known is not None else algorithm_names(env)
        if str(name).lower() not in {k.lower() for k in known}:
            bad(f"{kind}.name", f"'{name}' is not a built-in or registered NNI algorithm"
                f"{_did_you_mean(str(name), known)} (register facenas's with: facenas nni register)")
    camel = experiment_fields()
    normal = {f.lower() for f in camel}
    for key in cfg:
        if str(key).replace("_", "").lower() not in normal:
            bad(str(key), f"not a field of NNI's experiment config (v2){_did_you_mean(str(key), camel)}")
    if problems:
        return problems
    from nni.experiment.config import ExperimentConfig

    nni_view = copy.deepcopy(dict(cfg))
    if facenas_tuner:  # registered at launch (facenas nni register); its space is generated then
        nni_view.pop("advisor", None)
        nni_view["tuner"] = {"name": "Random"}
        if nni_view.get("searchSpace") is None and not nni_view.get("searchSpaceFile"):
            nni_view["searchSpace"] = {}
    try:
        with _cwd(root), _nni_quiet():
            ExperimentConfig(**nni_view).validate()
    except Exception as exc:  # noqa: BLE001 - NNI raises ValueError / AttributeError / TypeError; its assertions say nothing
        text = " ".join(str(exc).split()) or "a value is out of range"
        bad("schema", f"NNI's experiment config refuses it: {type(exc).__name__}: {text[:400]}")
    return problems


def validate_experiment(cfg: Mapping[str, Any], source: str | os.PathLike,
                        env: Mapping[str, str] | None = None) -> None:
    """:func:`experiment_problems`, raising the first as a :class:`ConfigError` (``facenas nni create``)."""
    problems = experiment_problems(cfg, source, env)
    if problems:
        raise ConfigError(problems[0])


@contextlib.contextmanager
def _cwd(path: Path | None) -> Any:
    old = os.getcwd()
    if path is not None and path.is_dir():
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def _nni_quiet() -> Any:
    """NNI's config classes warn through ``logging`` and ``warnings`` about what we report ourselves."""
    import warnings

    nni_log = logging.getLogger("nni")
    level = nni_log.level
    nni_log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            nni_log.setLevel(level)


def prepare_config(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None,
                   env: Mapping[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The experiment config to launch (paths absolute, search space generated, validated); plus warnings."""
    from facenas.adapters.nni.pipeline import PipelineScheduler, pipeline_config_of
    from facenas.adapters.nni.space import search_space_json

    src = Path(path).resolve()
    cfg = copy.deepcopy(load_yaml(src))
    cfg.update(dict(overrides or {}))
    warnings: list[str] = []
    base = src.parent
    for key in ("trialCodeDirectory", "searchSpaceFile"):
        if cfg.get(key) and not Path(os.path.expanduser(str(cfg[key]))).is_absolute():
            cfg[key] = str((base / str(cfg[key])).resolve())
    cfg.setdefault("trialCodeDirectory", str(base))
    if cfg.get("advisor") and not cfg.get("tuner"):
        cfg["tuner"] = cfg.pop("advisor")
    pipeline = pipeline_config_of(cfg.get("tuner"))
    if pipeline is not None:
        PipelineScheduler(pipeline, Path(tempfile.gettempdir()) / "facenas-validate")  # stage names checked
        spaces = pipeline.spaces()
        if spaces:
            name, space_config = spaces[0]
            generated = search_space_json(name, space_config)
            if len({(n, json.dumps(c, sort_keys=True)) for n, c in spaces}) > 1:
                warnings.append(f"the pipeline samples from several spaces; the portal shows the first one, '{name}'")
            given = cfg.get("searchSpace")
            if given is None and cfg.get("searchSpaceFile"):
                given = json.loads(Path(cfg["searchSpaceFile"]).read_text(encoding="utf-8"))
            if given is not None and given != generated:
                warnings.append(f"the experiment file's search space differs from space '{name}'s; using the generated one")
            cfg.pop("searchSpaceFile", None)
            cfg["searchSpace"] = generated
        elif cfg.get("searchSpace") is None and not cfg.get("searchSpaceFile"):
            cfg["searchSpace"] = {}
        command = str(cfg.get("trialCommand") or "")
        if TRIAL_MODULE not in command:
            warnings.append(f"trialCommand {command!r} does not run {TRIAL_MODULE}; facenas advisors send its parameters")
    validate_experiment(cfg, src, env)
    return cfg, warnings


def training_platforms(cfg: Mapping[str, Any]) -> list[str]:
    """The ``platform`` of each training service of an experiment config (a list in hybrid mode)."""
    ts = cfg.get("trainingService") or {}
    services = ts if isinstance(ts, list) else [ts]
    return [str(t.get("platform") or "") for t in services if isinstance(t, Mapping)]


def check_shared_output(path: str | os.PathLike, cfg: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """For trials on other machines (``remote``): the explicit, absolute output root every machine must see.

    Returns the root (None for a single-machine experiment); raises :class:`ConfigError` when a
    multi-machine experiment has none or a relative one, since trials would then write their
    artefacts into a folder under the manager's ``~/nni-experiments`` the other machines cannot read.
    """
    from facenas.adapters.nni.pipeline import pipeline_config_of

    if "remote" not in training_platforms(cfg):
        return None
    pipeline = pipeline_config_of(cfg.get("tuner"))
    root = (pipeline.output_dir if pipeline is not None else None) or env.get(OUTPUT_ENV)
    how = (f"give an absolute folder every machine mounts at the same path (NFS, or NNI's `sharedStorage`) as "
           f"`facenas nni create --output-root /shared/facenas` (or ${OUTPUT_ENV}, or classArgs output_dir)")
    if not root:
        raise ConfigError(f"{path}: trainingService 'remote' runs trials on other machines, which read earlier steps' "
                          f"artefacts by path, and no output root is set: {how}")
    if not os.path.isabs(os.path.expanduser(str(root))):
        raise ConfigError(f"{path}: output root {root!r} is relative; with trainingService 'remote' it must be absolute: {how}")
    return str(root)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` whose successor is free too (some NNI platforms use port + 1)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port < 65535 and _port_free(host, port + 1):
            return port
    raise FacenasError("no free port pair found on loopback")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def new_experiment_id() -> str:
    """An experiment id as NNI makes them (8 lower-case letters and digits), chosen before NNI is imported."""
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def working_directory(cfg: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """NNI's experiment working directory of ``cfg`` for ``env`` (``~`` is ``env``'s ``HOME``)."""
    home = env.get("HOME") or os.path.expanduser("~")
    given = str(cfg.get("experimentWorkingDirectory") or "").strip()
    if not given:
        return str(Path(home) / "nni-experiments")
    if given == "~" or given.startswith("~/"):
        given = home + given[1:]
    return os.path.abspath(given)  # as NNI's canonical config has it (no symlinks resolved)


def create(
    path: str | os.PathLike,
    port: int = 8080,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    debug: bool = False,
    timeout: float = 180,
    register_algorithms: bool = False,
) -> dict[str, Any]:
    """Start a facenas experiment on loopback (``nnictl create``, done in this process); returns id, port, URL, output folder.

    What ``nnictl create`` does -- validate the config, start NNI's manager (Node.js) detached, record
    it in NNI's manifest, post the config -- without a second Python process importing ``nni``, and
    for a ``local`` experiment with NNI's own Python processes (the dispatcher, the training
    service's version probe) forked from a server that imports their dependencies meanwhile
    (:func:`facenas.adapters.nni.warm.start_python_server`). ``nnictl stop / resume / view`` work on
    it as on any experiment. ``register_algorithms``: register the facenas advisors first (``facenas
    nni create``).
    """
    import yaml

    from facenas.adapters.nni import warm
    from facenas.adapters.nni.pipeline import pipeline_config_of

    env = dict(env) if env is not None else nni_env()
    timeline = {"create": time.time()}  # unix times of the launch's steps (benchmarks/bench_nni_overhead.py)
    exp_id = new_experiment_id()
    raw = {**load_yaml(path), **dict(overrides or {})}
    workdir = working_directory(raw, env)
    if not _port_free(bind_host(env), port):
        raise FacenasError(f"port {port} is already in use on {bind_host(env)}; choose another with --port")
    if _manager_mode(raw) in ("hybrid", "remote", "openpai", "kubeflow", "frameworkcontroller") \
            and not _port_free(bind_host(env), port + 1):  # NNI's trial channel for these platforms
        raise FacenasError(f"port {port + 1} (NNI's trial channel, port + 1) is already in use on {bind_host(env)}; "
                           "choose another --port")
    shim = None
    if training_platforms(raw) == ["local"] and warm.python_server_enabled(env):
        try:  # the interpreter NNI runs: it forks from the server once that is up, else runs the real one
            shim = warm.write_python_shim(warm.socket_path(exp_id, "python").with_suffix(".py"),
                                          warm.socket_path(exp_id, "python"))
        except OSError as exc:
            log.warning("NNI's processes import nni themselves (%s)", exc)
    python = str(shim) if shim else sys.executable
    # first the manager (Node.js: its arguments need no nni), which boots while this process imports
    manager = spawn_manager(exp_id, port, env, mode=_manager_mode(raw), workdir=workdir,
                            log_level=_manager_log_level(raw, debug), python=python)
    timeline["manager_spawned"] = time.time()
    server = None
    try:
        if shim is not None:
            server_log = Path(workdir) / exp_id / "log" / "facenas_python_server.log"
            try:  # forked from here when this process has no nni yet (the CLI), else a new interpreter
                server = warm.fork_python_server(exp_id, server_log) or warm.start_python_server(exp_id, env, server_log)
            except OSError as exc:
                log.warning("no python server for NNI's processes (%s): they import nni themselves", exc)
            timeline["python_server_started"] = time.time()
        cfg, warnings = prepare_config(path, overrides, env)
        timeline["validated"] = time.time()
        for w in warnings:
            log.warning("%s: %s", path, w)
        root = check_shared_output(path, cfg, env)
        if root is not None and TRIAL_MODULE in str(cfg.get("trialCommand") or ""):
            pipeline = pipeline_config_of(cfg.get("tuner"))
            template = pipeline.output_dir if pipeline is not None and pipeline.output_dir else str(Path(root) / "{experiment_id}")
            cfg["trialCommand"] = f"{cfg['trialCommand']} --experiment-output {shlex.quote(template)}"
        if register_algorithms:
            register(env)
        cfg["experimentWorkingDirectory"] = workdir
        manager = start_manager(cfg, exp_id, port, env, debug=debug, timeout=timeout, python=python,
                                base=Path(path).resolve().parent, manager=manager)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            manager.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            manager.wait(timeout=10)
        shutil.rmtree(Path(workdir) / exp_id, ignore_errors=True)  # nothing of a refused experiment is left
        if server is not None:
            server[0].terminate()
        if shim is not None:
            warm.remove_python_server_files(exp_id)
        raise
    if server is not None:
        warm.watch(exp_id, manager.pid)
    reap_when_done(manager)
    out = Path(env[OUTPUT_ENV]) / exp_id if env.get(OUTPUT_ENV) else Path(workdir) / exp_id / "facenas"
    pipeline = pipeline_config_of(cfg.get("tuner"))
    if pipeline is not None and pipeline.output_dir:  # the advisor writes there (see PipelineAdvisor)
        out = Path(pipeline.output_dir.replace("{experiment_id}", exp_id))
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiment.yml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    host = bind_host(env)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    return {"experiment_id": exp_id, "port": port, "url": url, "output_dir": str(out),
            "working_directory": workdir, "warnings": warnings, "manager_pid": manager.pid,
            "python_server": server is not None, "timeline": {**timeline, "posted": time.time()}}


@contextlib.contextmanager
def _environ(env: Mapping[str, str], keys: Sequence[str]) -> Any:
    """``os.environ[key]`` as in ``env`` for ``keys`` meanwhile (NNI reads them when called, not only at import)."""
    old = {k: os.environ.get(k) for k in keys}
    try:
        for k in keys:
            if env.get(k) is not None:
                os.environ[k] = env[k]
            else:
                os.environ.pop(k, None)
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _manager_mode(cfg: Mapping[str, Any]) -> str:
    platforms = training_platforms(cfg)
    return "hybrid" if isinstance(cfg.get("trainingService"), list) else (platforms[0] if platforms else "local")


def _manager_log_level(cfg: Mapping[str, Any], debug: bool) -> str:
    level = str(cfg.get("logLevel") or "info")
    return "debug" if debug and level not in ("debug", "trace") else level


def _manager_command(experiment_id: str, port: int, mode: str, workdir: str, log_level: str, python: str) -> list[str]:
    """The Node.js command of NNI 3.0's manager (``nni.experiment.launcher``: its argument names and order)."""
    import importlib.util

    spec = importlib.util.find_spec("nni_node")  # NNI's Node.js part (no nni import)
    if spec is None or not spec.submodule_search_locations:
        raise NNICommandError("the nni_node package (NNI's manager) is missing: pip install nni==3.0")
    node_dir = Path(list(spec.submodule_search_locations)[0])
    return [str(node_dir / "node"), "--max-old-space-size=4096", "--trace-uncaught", str(node_dir / "main.js"),
            "--port", str(port), "--experiment-id", experiment_id, "--action", "create", "--mode", mode,
            "--experiments-directory", workdir, "--log-level", log_level, "--foreground", "false",
            "--python-interpreter", python]


def reap_when_done(proc: subprocess.Popen) -> threading.Thread:
    """Collect ``proc``'s exit status as soon as it ends (a daemon thread waiting on it).

    NNI's manager is this process's child when ``create`` runs in a process that lives on (the demo, the
    tests, ``create --wait``); unreaped, the ended manager stays a zombie whose pid still exists, and
    ``nnictl stop`` waits its full 60 s for that pid to go. Started after the python server's fork,
    which needs a process without other threads.
    """
    thread = threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True)
    thread.start()
    return thread


def spawn_manager(experiment_id: str, port: int, env: Mapping[str, str], mode: str, workdir: str, log_level: str,
                  python: str) -> subprocess.Popen:
    """Start NNI's manager process (detached, its output in the experiment's log folder); no config posted yet."""
    cmd = _manager_command(experiment_id, port, mode, workdir, log_level, python)
    log_dir = Path(workdir) / experiment_id / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    header = "-" * 80 + f"\nExperiment {experiment_id} start: {time.strftime('%Y-%m-%d %H:%M:%S')} (facenas nni create)\n" + "-" * 80 + "\n"
    with open(log_dir / "nnictl_stdout.log", "a", encoding="utf-8") as out, \
            open(log_dir / "nnictl_stderr.log", "a", encoding="utf-8") as err:
        out.write(header)
        err.write(header)
        out.flush()
        err.flush()
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=Path(cmd[3]).parent,
                                env=dict(env), process_group=0)


def start_manager(cfg: Mapping[str, Any], experiment_id: str, port: int, env: Mapping[str, str], debug: bool = False,
                  timeout: float = 180, python: str | None = None, base: Path | None = None,
                  manager: subprocess.Popen | None = None) -> subprocess.Popen:
    """Start NNI's manager for ``cfg`` detached, as ``nnictl create`` does (NNI 3.0), and post the config.

    ``env`` is the manager's environment (``HOME``: NNI's manifest; ``NNI_CONFIG_DIR``: registered
    algorithms); ``python``: the interpreter it runs its Python processes with (``pythonInterpreter``);
    ``base``: the folder relative paths of ``cfg`` are read from; ``manager``: a process
    :func:`spawn_manager` started already (replaced if NNI would have started it otherwise). The
    manager is polled every 50 ms until its REST API answers (nnictl waits whole seconds, three
    times at most). Returns its process.
    """
    import nni_node
    from nni.experiment.config import ExperimentConfig
    from nni.experiment.config import utils as config_utils
    from nni.experiment.launcher import NniManagerArgs
    from nni.tools.nnictl.config_utils import Experiments

    with _environ(env, ("HOME", "NNI_CONFIG_DIR")), _nni_quiet():
        config_utils.set_base_path(base or Path.cwd())
        try:
            config = ExperimentConfig(**copy.deepcopy(dict(cfg))).canonical_copy()
        except Exception as exc:  # noqa: BLE001 - checked by experiment_problems already; what is left is NNI's
            raise ConfigError(f"NNI's experiment config refuses it: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}") from None
        finally:
            config_utils.unset_base_path()
    args = NniManagerArgs("create", experiment_id, config, port, debug, False, None, None)
    args.python_interpreter = python or sys.executable
    workdir = Path(str(config.experiment_working_directory))
    log_dir = workdir / experiment_id / "log"
    node_dir = Path(nni_node.__path__[0])
    cmd = [str(node_dir / "node"), "--max-old-space-size=4096", "--trace-uncaught", str(node_dir / "main.js"),
           *args.to_command_line_args()]
    if manager is not None and list(manager.args) != cmd:  # started on a guess that NNI's config corrects
        log.warning("restarting NNI's manager with NNI's arguments %s (was %s)", cmd[4:], list(manager.args)[4:])
        manager.kill()
        manager.wait()
        manager = None
    proc = manager or spawn_manager(experiment_id, port, env, args.mode, str(workdir), args.log_level, args.python_interpreter)
    if list(proc.args) != cmd:
        raise NNICommandError(f"facenas starts NNI's manager as {list(proc.args)[4:]}, NNI 3.0 as {cmd[4:]}: "
                              "an NNI version facenas does not know (pip install nni==3.0)")
    start_ms = int(time.time() * 1000)
    latest = workdir / "_latest"
    with contextlib.suppress(OSError):
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(experiment_id, target_is_directory=True)
    host = bind_host(env)
    client = RestClient(port, host=host if host in LOOPBACK_HOSTS else "127.0.0.1")
    deadline = time.time() + timeout
    try:
        while True:
            try:
                client.status()
                break
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                if proc.poll() is not None:
                    tail = (log_dir / "nnictl_stderr.log").read_text(encoding="utf-8", errors="replace")[-2000:]
                    raise NNICommandError(f"the NNI manager exited (code {proc.returncode}) before it answered on port {port}:\n{tail}") from None
                if time.time() > deadline:
                    raise NNICommandError(f"the NNI manager did not answer on port {port} within {timeout} s") from None
                time.sleep(0.05)
        Experiments(home_dir=str(Path(env.get("HOME") or os.path.expanduser("~")) / "nni-experiments")).add_experiment(
            experiment_id, port, start_ms, args.mode, config.experiment_name, pid=proc.pid, logDir=str(workdir),
            tag=[], prefixUrl=None)
        client.post("/experiment", config.json())
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    return proc


def wait_done(port: int, timeout: float, poll: float = 0.1, done_grace: float = 15.0,
              host: str = "127.0.0.1") -> str:
    """Wait until the experiment on ``port`` ends; its final status (``DONE``, ``ERROR``, ``STOPPED`` ...).

    Only ``/check-status`` is polled (every ``poll`` s: a few milliseconds of the manager's time).
    A facenas advisor turns its experiment DONE; with another tuner "no more trial" with every trial
    ended for ``done_grace`` s is its end. Raises :class:`FacenasError` after ``timeout`` s.
    """
    terminal = {"SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED"}
    client = RestClient(port, host=host)
    deadline = time.time() + timeout
    ended_at = None
    while True:
        status = str(client.status().get("status", "?"))
        if status in ("DONE", "ERROR", "STOPPED"):
            return status
        if status in ("NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL"):
            jobs = client.get("/trial-jobs") or []
            if jobs and all(j.get("status") in terminal for j in jobs):
                ended_at = ended_at or time.time()
                if time.time() - ended_at > done_grace:
                    return status
            else:
                ended_at = None
        if time.time() > deadline:
            raise FacenasError(f"the experiment on port {port} did not end within {timeout} s (status {status})")
        time.sleep(poll)


def stop(experiment_id: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> None:
    nnictl(["stop", experiment_id], env=env, timeout=timeout)


def resume(experiment_id: str, port: int = 8080, env: Mapping[str, str] | None = None, timeout: float = 180) -> str:
    """``nnictl resume`` on loopback; returns the portal URL."""
    env = dict(env) if env is not None else nni_env()
    nnictl(["resume", experiment_id, "--port", port], env=env, timeout=timeout)
    return f"http://{bind_host(env)}:{port}"


def view(experiment_id: str, port: int = 8080, env: Mapping[str, str] | None = None, timeout: float = 180) -> str:
    """``nnictl view`` (read-only portal of a stopped experiment) on loopback; returns the URL."""
    env = dict(env) if env is not None else nni_env()
    nnictl(["view", experiment_id, "--port", port], env=env, timeout=timeout)
    return f"http://{bind_host(env)}:{port}"


# -- REST API (loopback only) -----------------------------------------------------------------------
class RestClient:
    """Minimal client of NNI's REST API (``/api/v1/nni/...``) on a loopback address."""

    def __init__(self, port: int, host: str = "127.0.0.1", url_prefix: str = "", timeout: float = 10.0):
        if host not in LOOPBACK_HOSTS:
            raise FacenasError(f"refusing to contact {host}: facenas only talks to NNI on loopback")
        prefix = ("/" + url_prefix.strip("/")) if url_prefix.strip("/") else ""
        h = f"[{host}]" if ":" in host else host
        self.base = f"http://{h}:{port}{prefix}/api/v1/nni"
        self.timeout = timeout

    def get(self, route: str) -> Any:
        with urllib.request.urlopen(self.base + route, timeout=self.timeout) as resp:  # noqa: S310 - loopback only
            text = resp.read().decode()
        return json.loads(text) if text else None

    def post(self, route: str, body: Any) -> Any:
        req = urllib.request.Request(self.base + route, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=max(self.timeout, 60.0)) as resp:  # noqa: S310 - loopback only
            text = resp.read().decode()
        return json.loads(text) if text else None

    def status(self) -> dict[str, Any]:
        return self.get("/check-status")

    def experiment(self) -> dict[str, Any]:
        return self.get("/experiment")

    def trials(self) -> list[dict[str, Any]]:
        """Trial jobs with ``parameters`` and ``final`` decoded (NNI encodes final metrics twice)."""
        out = []
        for job in self.get("/trial-jobs") or []:
            params = None
            if job.get("hyperParameters"):
                params = json.loads(job["hyperParameters"][-1]).get("parameters")
            final = None
            if job.get("finalMetricData"):
                final = decode_metric(job["finalMetricData"][-1]["data"])
            out.append({"trial_id": job["trialJobId"], "status": job["status"], "sequence_id": job.get("sequenceId"),
                        "parameters": params, "final": final, "log_path": job.get("logPath"), "raw": job})
        return out

    def intermediates(self, trial_id: str) -> list[Any]:
        return [decode_metric(m["data"]) for m in self.get(f"/metric-data/{trial_id}") or [] if m.get("type") == "PERIODICAL"]

    def wait_reachable(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while True:
            try:
                self.status()
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.time() > deadline:
                    raise FacenasError(f"NNI REST API at {self.base} not reachable within {timeout} s") from None
                time.sleep(0.5)


def decode_metric(data: Any) -> Any:
    """A metric from the REST API: JSON text of JSON text of the reported value."""
    value = data
    for _ in range(3):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            break
    return value


# -- processes -------------------------------------------------------------------------------------
def _proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (Linux ``/proc``)."""
    children = _proc_children()
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def experiment_processes(experiment_id: str, extra_pids: Sequence[int] = ()) -> list[int]:
    """Live processes of an experiment: given pids, any whose command line or environment names it, and
    its python-mode server (``facenas nni create``) with what descends from it (the dispatcher, the
    warm trial server, trials: forked, so neither their command line nor environment says so)."""
    from facenas.adapters.nni.warm import python_server_pid

    server = python_server_pid(experiment_id)
    live = [server, *descendants(server)] if server else []
    needle_cmd = f"--experiment-id {experiment_id}"
    needle_env = f"NNI_EXP_ID={experiment_id}".encode()
    log_dir = f"/{experiment_id}/log".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if pid in extra_pids or needle_cmd in cmd or needle_env in environ or b"NNI_LOG_DIRECTORY=" in environ and log_dir in environ:
            live.append(pid)
    return sorted(set(live) | {p for p in extra_pids if _alive(p)})


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_and_wait(experiment_id: str, watched: Sequence[int], env: Mapping[str, str] | None = None,
                  grace: float = 30.0, poll: float = 0.1) -> tuple[list[int], str | None]:
    """``nnictl stop``, then wait up to ``grace`` s for the experiment's processes (and ``watched``) to end.

    Returns the processes still alive then (for :func:`terminate`) and the stop's error line, if it failed.
    """
    error = None
    try:
        stop(experiment_id, env=env)
    except NNICommandError as exc:
        error = str(exc).splitlines()[0]
    deadline = time.time() + grace
    while True:
        leftovers = experiment_processes(experiment_id, watched)
        if not leftovers or time.time() > deadline:
            return leftovers, error
        time.sleep(poll)


def terminate(pids: Sequence[int], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, the given processes (ones we started)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.time() + grace
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def listening_sockets(port: int) -> list[str]:
    """Local addresses listening on TCP ``port`` (from ``/proc/net/tcp*``), e.g. ``127.0.0.1``."""
    out = []
    for name, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state != "0A":  # LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            if int(port_hex, 16) != port:
                continue
            out.append(_decode_addr(addr_hex, family))
    return out


def _decode_addr(addr_hex: str, family: int) -> str:
    raw = bytes.fromhex(addr_hex)
    if family == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def which_nnictl() -> str:
    """How to run nnictl with this interpreter (for messages)."""
    exe = shutil.which("nnictl")
    return exe or f"{sys.executable} -m nni.tools.nnictl.nnictl"
