"""Warm trials (adapters/nni/warm.py): a trial process hands its run to a server that has the imports done."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from facenas.adapters.nni import warm
from tests.nni.file_channel import CHANNEL

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # each cold trial process pays the imports the server saves (tens of s on a busy machine)

TOY = {"stem/width": 8, "block/kernel_size": 3, "block/depth": 1, "block/op": "conv"}


@pytest.fixture
def server(tmp_path):
    exp_id = f"test{uuid.uuid4().hex[:8]}"
    path = warm.socket_path(exp_id)
    proc = subprocess.Popen([sys.executable, "-m", "facenas.adapters.nni.warm", "--socket", str(path), "--parent",
                             str(os.getpid()), "--preload", "torch", "--stages", "toy.evaluate"],
                            stdout=open(tmp_path / "server.log", "wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()
        time.sleep(0.1)
    yield exp_id, proc
    proc.terminate()
    proc.wait(10)
    assert not path.exists()


def _trial(tmp_path, exp_id, name, params, platform="local", extra_env=None):
    """A trial process as NNI's local service starts it (parameters through a file-backed command channel)."""
    out = tmp_path / name
    nni_dir = tmp_path / f"{name}-nni"
    nni_dir.mkdir()
    parameters = {"facenas": {"stage": "toy.evaluate", "params": params, "space": "toy", "out_dir": str(out)}, **TOY}
    (nni_dir / "parameters.json").write_text(json.dumps(parameters))
    env = {**os.environ, "NNI_PLATFORM": platform, "NNI_EXP_ID": exp_id, "NNI_TRIAL_JOB_ID": name,
           "NNI_OUTPUT_DIR": str(nni_dir), "NNI_SYS_DIR": str(nni_dir), "NNI_TRIAL_SEQ_ID": "-1",
           "NNI_TRIAL_COMMAND_CHANNEL": CHANNEL, "PYTHONPATH": str(REPO),
           "FACENAS_TEST_PARAMETERS": str(nni_dir / "parameters.json"), "FACENAS_TEST_METRICS": str(nni_dir / "metrics.jsonl"),
           **(extra_env or {})}
    proc = subprocess.run([sys.executable, "-m", "facenas.adapters.nni.trial"], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    metrics = [json.loads(line) for line in (nni_dir / "metrics.jsonl").read_text().splitlines()] \
        if (nni_dir / "metrics.jsonl").exists() else []
    return proc, out, metrics


def test_trial_runs_in_the_warm_server_with_its_own_output_and_exit_status(server, tmp_path):
    exp_id, srv = server
    ok, out, metrics = _trial(tmp_path, exp_id, "ok", {"epochs": 2})
    assert ok.returncode == 0, ok.stderr
    record = json.loads((out / "result.json").read_text())
    assert record["status"] == "SUCCEEDED" and record["nni"]["warm_server"] == srv.pid
    assert record["nni"]["trial_id"] == "ok"  # NNI's trial environment was re-read in the child
    assert "stage toy.evaluate done" in ok.stderr  # the child wrote to the trial process's stderr
    # the metrics went through NNI's channel, from a child of the server, not from the trial process
    assert [m["type"] for m in metrics] == ["PERIODICAL", "PERIODICAL", "FINAL"]
    assert {m["trial_job_id"] for m in metrics} == {"ok"}
    bad, out, _ = _trial(tmp_path, exp_id, "bad", {"epochs": 1, "fail_if": TOY})
    assert bad.returncode == 1 and json.loads((out / "result.json").read_text())["status"] == "FAILED"
    # not NNI's local platform (e.g. remote): the trial runs in its own process
    remote, out, _ = _trial(tmp_path, exp_id, "remote", {"epochs": 1}, platform="remote")
    assert remote.returncode == 0, remote.stderr
    assert "warm_server" not in json.loads((out / "result.json").read_text())["nni"]


def test_no_server_means_the_trial_runs_in_its_own_process(tmp_path):
    proc, out, metrics = _trial(tmp_path, "nonexistent-experiment", "cold", {"epochs": 1})
    assert proc.returncode == 0, proc.stderr
    assert "warm_server" not in json.loads((out / "result.json").read_text())["nni"] and metrics[-1]["type"] == "FINAL"


def test_server_ends_with_the_process_that_started_it(tmp_path):
    exp_id = f"test{uuid.uuid4().hex[:8]}"
    path = warm.socket_path(exp_id)
    parent = subprocess.Popen([sys.executable, "-c", f"""
import subprocess, sys, time
p = subprocess.Popen([sys.executable, '-m', 'facenas.adapters.nni.warm', '--socket', {str(path)!r}, '--parent', str(__import__('os').getpid()), '--preload', ''])
print(p.pid, flush=True)
time.sleep(3)
"""], stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    parent.wait(30)
    deadline = time.time() + 15
    while Path(f"/proc/{server_pid}").exists() and time.time() < deadline:
        time.sleep(0.2)
    state = Path(f"/proc/{server_pid}/stat").read_text().split()[2] if Path(f"/proc/{server_pid}").exists() else "gone"
    assert state in ("gone", "Z")
    assert not path.exists()


def test_server_forked_from_a_dispatcher_serves_trials_and_ends_with_it(tmp_path):
    """The advisor forks the server from its own process, where ``nni`` was imported in NNI's dispatcher
    mode (no trial API, dispatcher logging): its children still run trials through NNI's trial API, each
    with the threads it was given."""
    import shutil
    import tempfile

    exp_id = f"test{uuid.uuid4().hex[:8]}"
    tmpdir = tempfile.mkdtemp(prefix="fw")  # its own socket folder (AF_UNIX paths are short)
    path = Path(tmpdir) / f"facenas-warm-{os.getuid()}" / f"{exp_id}.sock"
    logs = tmp_path / "nni-log"
    logs.mkdir()
    env = {**os.environ, "SDK_PROCESS": "dispatcher", "NNI_LOG_DIRECTORY": str(logs), "PYTHONPATH": str(REPO),
           "TMPDIR": tmpdir}
    parent = subprocess.Popen([sys.executable, "-c", f"""
import sys, threading
from pathlib import Path
import nni
assert not hasattr(nni, "get_next_parameter")  # NNI's dispatcher mode
from facenas.adapters.nni import warm
handle = warm.start({exp_id!r}, ["toy.evaluate"], Path({str(tmp_path / 'warm.log')!r}), threads=1)
print(handle.pid, threading.active_count(), flush=True)
sys.stdin.readline()
"""], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        server_pid, threads = map(int, parent.stdout.readline().split())
        assert threads == 1
        deadline = time.time() + 120
        while not path.exists():
            assert parent.poll() is None and time.time() < deadline, (tmp_path / "warm.log").read_text()
            time.sleep(0.1)
        ok, out, metrics = _trial(tmp_path, exp_id, "forked", {"epochs": 2}, extra_env={"TMPDIR": tmpdir})
        assert ok.returncode == 0, ok.stderr + (tmp_path / "warm.log").read_text()
        record = json.loads((out / "result.json").read_text())
        assert record["status"] == "SUCCEEDED" and record["nni"]["warm_server"] == server_pid
        assert record["nni"]["trial_id"] == "forked"
        assert record["nni"]["threads"] == 1  # its share of the cores (trialConcurrency trials side by side)
        assert [m["type"] for m in metrics] == ["PERIODICAL", "PERIODICAL", "FINAL"]
        assert "forked from the advisor" in (tmp_path / "warm.log").read_text()
        assert not (logs / "dispatcher.log").exists() or "toy.evaluate" not in (logs / "dispatcher.log").read_text()
    finally:
        parent.stdin.close()
        parent.wait(30)
    deadline = time.time() + 15
    while Path(f"/proc/{server_pid}").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{server_pid}").exists() or Path(f"/proc/{server_pid}/stat").read_text().split()[2] == "Z"
    assert not path.exists()
    shutil.rmtree(tmpdir, ignore_errors=True)
