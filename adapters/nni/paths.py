"""Where NNI and facenas keep an experiment's files.

NNI 3.0 keeps each experiment under ``<experimentWorkingDirectory>/<experiment id>/`` (database,
logs, trial logs under ``environments/.../trials/<trial id>``); the working directory defaults to
``~/nni-experiments``. The list of experiments that ``nnictl stop / resume / view`` consult (the
"manifest", ``.experiment``) always lives in ``~/nni-experiments``, i.e. follows ``$HOME``; the
registered algorithms live in ``$NNI_CONFIG_DIR`` (default: ``<venv>/nni``).

The **facenas experiment output folder** holds what a facenas experiment produces:

- ``$FACENAS_NNI_OUTPUT/<experiment id>/`` when ``FACENAS_NNI_OUTPUT`` is set, else
- ``<experimentWorkingDirectory>/<experiment id>/facenas/`` (next to NNI's own files).

Inside it each trial has its own folder (``<step>/<index>`` for trials scheduled by the facenas
advisors, ``trials/<trial id>`` otherwise) and the experiment's outcome is summarised in
``summary.json``, ``summary.md`` and ``best_architectures.json``
(see :mod:`facenas.adapters.nni.results`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from facenas.errors import FacenasError

#: environment variable: root of facenas experiment output folders
OUTPUT_ENV = "FACENAS_NNI_OUTPUT"
#: environment variable: interface the NNI manager's web server binds (default 127.0.0.1)
BIND_HOST_ENV = "FACENAS_NNI_BIND_HOST"


def nni_home() -> Path:
    """``~/nni-experiments`` (the manifest's folder and the default working directory)."""
    return Path(os.path.expanduser("~")) / "nni-experiments"


def experiment_output_dir(experiment_id: str, working_directory: str | os.PathLike | None = None) -> Path:
    """The facenas output folder of ``experiment_id`` (see the module docstring)."""
    root = os.environ.get(OUTPUT_ENV)
    if root:
        return Path(root).expanduser() / experiment_id
    base = Path(working_directory).expanduser() if working_directory else nni_home()
    return base / experiment_id / "facenas"


def output_dir_in_trial() -> Path:
    """The experiment output folder, computed inside an NNI trial from NNI's environment."""
    exp_id = os.environ.get("NNI_EXP_ID")
    if not exp_id:
        raise FacenasError("not inside an NNI trial (NNI_EXP_ID is not set); give --output")
    if os.environ.get(OUTPUT_ENV):
        return experiment_output_dir(exp_id)
    trial_dir = os.environ.get("NNI_OUTPUT_DIR")
    if trial_dir:
        for parent in Path(trial_dir).resolve().parents:
            if parent.name == exp_id:
                return parent / "facenas"
        return Path(trial_dir) / "facenas"
    return experiment_output_dir(exp_id)


def output_dir_in_dispatcher(experiment_id: str | None = None) -> Path:
    """The experiment output folder, computed in the tuner/advisor process (``NNI_LOG_DIRECTORY``)."""
    exp_id = experiment_id or os.environ.get("NNI_EXP_ID")
    log_dir = os.environ.get("NNI_LOG_DIRECTORY")
    if log_dir:
        exp_dir = Path(log_dir).resolve().parent
        exp_id = exp_id or exp_dir.name
        if os.environ.get(OUTPUT_ENV):
            return experiment_output_dir(exp_id)
        return exp_dir / "facenas"
    if exp_id:
        return experiment_output_dir(exp_id)
    raise FacenasError("cannot tell the experiment's folder (NNI_LOG_DIRECTORY is not set); give output_dir in classArgs")


def read_manifest(home: str | os.PathLike | None = None) -> dict[str, Any]:
    """NNI's experiment manifest (``~/nni-experiments/.experiment``): id -> record."""
    path = Path(home) if home else nni_home()
    manifest = path / ".experiment"
    if not manifest.is_file():
        return {}
    try:
        return json.loads(manifest.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError as exc:
        raise FacenasError(f"{manifest}: not valid JSON ({exc})") from None


def find_experiment_output(experiment_id: str, experiment_dir: str | os.PathLike | None = None) -> Path:
    """The output folder of a finished or running experiment, found through NNI's manifest."""
    if experiment_dir:
        candidates = [Path(experiment_dir)]
    else:
        record = read_manifest().get(experiment_id)
        candidates = []
        if os.environ.get(OUTPUT_ENV):
            candidates.append(experiment_output_dir(experiment_id))
        if record and record.get("logDir"):
            candidates.append(Path(record["logDir"]) / experiment_id / "facenas")
        candidates.append(nni_home() / experiment_id / "facenas")
    for cand in candidates:
        for path in (cand, cand / experiment_id, cand / experiment_id / "facenas", cand / "facenas"):
            if path.is_dir() and (any(path.glob("*/result.json")) or any(path.glob("*/*/result.json"))
                                  or (path / "summary.json").is_file()):
                return path
    tried = ", ".join(str(c) for c in candidates)
    raise FacenasError(
        f"no facenas output found for experiment '{experiment_id}' (looked in {tried}); "
        f"give --experiment-dir, or set {OUTPUT_ENV} as when the experiment ran"
    )
