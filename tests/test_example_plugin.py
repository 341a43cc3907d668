"""The example external method (``examples/facenas-random-search``), installed as a user would.

The package is built and installed into a temporary folder (``pip install --no-deps --target``)
from a copy of its sources, and the commands run with that folder on ``PYTHONPATH``: the venv
facenas runs from is never modified, even when a test fails. Installed, the method must appear in
``facenas methods`` and run through ``facenas nni run-local`` (fast suite), through ``facenas
search`` and pass ``facenas nni e2e`` through nnictl (slow).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "facenas-random-search"
PIPELINE = EXAMPLE / "random_search_test.yml"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a facenas with the example package installed beside it."""
    root = tmp_path_factory.mktemp("example_plugin")
    src = root / "src"
    # a copy: building in place would leave build/ and *.egg-info in the repository
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(src)], check=True, timeout=300)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _facenas(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "facenas"), "-q", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_installed_example_is_listed_and_the_venv_is_not_touched(plugin_env, tmp_path):
    res = _facenas(["methods", "--json"], plugin_env, tmp_path)
    assert res.returncode == 0, res.stderr
    rows = {row["name"]: row for row in json.loads(res.stdout)}
    assert {"enas", "ofa", "tnas", "random_search"} <= set(rows)
    rs = rows["random_search"]
    assert rs["distribution"] == "facenas-random-search" and rs["package"] == "facenas_random_search"
    assert rs["spaces"] == ["random_search_tiny"] and rs["strategies"] == ["random_under_flops"]
    assert rs["stages"] == ["random_search.evaluate", "random_search.search"]
    assert (REPO / rs["docs"]).is_file()
    # this process does not have the install folder on its path and does not see the method:
    # nothing was installed into the venv
    from facenas.methods import methods

    assert "random_search" not in methods(reload=True) and "facenas_random_search" not in sys.modules


@pytest.mark.slow  # two trainings in a subprocess: ~25 s on a loaded 2-core machine
def test_example_search_runs_from_the_generic_cli(plugin_env, tmp_path):
    out = tmp_path / "rs"
    res = _facenas(["search", "random_search", "--set", "budget=2", "--set", "max_mflops=0.5", "--output", str(out),
                    "--json"], plugin_env, tmp_path)
    assert res.returncode == 0, res.stderr
    final = json.loads(res.stdout.strip().splitlines()[-1])
    assert final["stage"] == "random_search.search" and final["evaluated"] == 2
    assert all(a["mflops"] <= 0.5 for a in final["architectures"])
    arch = json.loads(Path(final["arch_path"]).read_text())
    assert arch["format"] == "facenas.arch/1" and arch["space"] == "random_search_tiny"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(line["type"] == "intermediate" for line in lines) == 2  # one intermediate result per sample


def test_example_pipeline_runs_locally(plugin_env, tmp_path):
    out = tmp_path / "pipeline"
    res = _facenas(["nni", "run-local", str(PIPELINE), "--output", str(out), "--json"], plugin_env, tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    trials = summary["trials"]
    assert [t["step"] for t in trials] == ["data", "candidates", "candidates", "candidates", "retrain"]
    assert all(t["status"] == "SUCCEEDED" for t in trials), trials
    candidates = [json.loads((Path(t["out_dir"]) / "result.json").read_text()) for t in trials if t["step"] == "candidates"]
    samples = {json.dumps(c["arch"]["sample"], sort_keys=True) for c in candidates}
    assert len(samples) == 3  # the strategy proposed three distinct samples
    assert all(c["metrics"]["mflops"] <= 0.5 and "val_acc" in c["metrics"] for c in candidates)


@pytest.mark.slow
@pytest.mark.nni
def test_example_pipeline_passes_nni_e2e(plugin_env, tmp_path):
    # (--require applies to every step, the data step included, so the named metrics are checked by run-local above)
    res = _facenas(["nni", "e2e", str(PIPELINE), "--json"], plugin_env, tmp_path, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["status"] == "DONE" and report["trials"] == 5 and report["failed"] == 0
