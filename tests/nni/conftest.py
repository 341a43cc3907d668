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
