"""Fixtures for the NNI tests: NNI state kept under pytest's temporary folders."""
from __future__ import annotations

import pytest


@pytest.fixture
def nas_home(tmp_path, monkeypatch):
    """Make in-process NasExperiments write their manifest and files under ``tmp_path``.

    NNI's manifest class takes ``~/nni-experiments`` as a default argument bound at import time, so
    changing ``HOME`` is not enough once ``nni`` is imported; its default is replaced for the test.
    """
    from facenas.adapters.nni import _imports

    _imports.nas()
    import nni.tools.nnictl.config_utils as config_utils

    home = tmp_path / "nni-experiments"
    home.mkdir()
    monkeypatch.setattr(config_utils.Experiments.__init__, "__defaults__", (str(home),))
    return tmp_path


def stop_and_check_nothing_left(exp_id: str, env: dict) -> None:
    """``nnictl stop`` an experiment, then fail (after cleaning up) if any of its processes is left."""
    import time

    from facenas.adapters.nni import launch

    launch.nnictl(["stop", exp_id], env=env, check=False)
    time.sleep(2)
    left = launch.experiment_processes(exp_id)
    if left:
        launch.terminate(left)
    assert left == [], f"processes left behind: {left}"


def start_toy_experiment(tmp_path, name: str = "toy_test.yml", edit=None):
    """Start ``recipes/nni/<name>`` through ``launch.create`` in a temporary NNI home.

    ``edit(config)`` changes the loaded file first (then started from a copy in ``tmp_path``).
    Returns ``(env, port, info)``; stop it with :func:`stop_and_check_nothing_left`.
    """
    from pathlib import Path

    import yaml

    from facenas.adapters.nni import launch

    env = launch.nni_env(home=tmp_path / "home", config_dir=tmp_path / "cfg")
    launch.register(env)
    port = launch.free_port()
    path = Path(__file__).resolve().parents[2] / "recipes" / "nni" / name
    if edit is not None:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        edit(config)
        config["searchSpaceFile"] = str(path.parent / config["searchSpaceFile"])
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    info = launch.create(path, port=port, env=env)
    return env, port, info
