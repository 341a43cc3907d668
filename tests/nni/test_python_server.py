"""NNI's own Python processes served by the python-mode warm server (adapters/nni/warm.py), and the
in-process launch of ``facenas nni create`` (adapters/nni/launch.py)."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from facenas.adapters.nni import launch, warm
from facenas.errors import FacenasError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def python_server(tmp_path):
    """A python-mode server (tiny preload: fast) with its shim; yields (exp_id, shim, process, log)."""
    exp_id = f"pytest{os.getpid()}{time.time_ns() % 100000}"
    path = warm.socket_path(exp_id, "python")
    shim = warm.write_python_shim(path.with_suffix(".py"), path)
    log_file = tmp_path / "server.log"
    with open(log_file, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "facenas.adapters.nni.warm", "--mode", "python", "--socket", str(path),
                                 "--experiment-id", exp_id, "--preload", "json", "--owned", str(shim)],
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not path.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), log_file.read_text()
    yield exp_id, shim, proc, log_file
    proc.terminate()
    proc.wait(timeout=30)


def test_python_mode_runs_dash_m_forked_and_anything_else_in_the_real_interpreter(python_server, tmp_path):
    exp_id, shim, server, log_file = python_server
    (tmp_path / "probe_mod.py").write_text(
        "import os, sys, json\n"
        "print(json.dumps({'argv': sys.argv[1:], 'name': __name__, 'cwd': os.getcwd(), 'ppid': os.getppid(),\n"
        "                  'env': os.environ.get('FACENAS_TEST_VAR'), 'nni': 'nni' in sys.modules,\n"
        "                  'path0': sys.path[0], 'stdin': sys.stdin.read()}))\n"
        "sys.exit(3)\n")
    env = {**os.environ, "FACENAS_TEST_VAR": "from-the-caller"}
    proc = subprocess.run([str(shim), "-m", "probe_mod", "--exp_params", "x y"], cwd=tmp_path, env=env, input="fed",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    # what `python -m probe_mod` would see: its arguments, __main__, the caller's cwd, environment and stdin
    assert out["argv"] == ["--exp_params", "x y"] and out["name"] == "__main__"
    assert out["cwd"] == str(tmp_path) and out["path0"] == str(tmp_path) and out["env"] == "from-the-caller"
    assert out["stdin"] == "fed" and out["nni"] is False
    assert out["ppid"] == server.pid  # forked from the server, not a fresh interpreter
    assert "runs -m probe_mod" in log_file.read_text()
    # anything but `-m MODULE` runs the real interpreter, which the server does not see
    proc = subprocess.run([str(shim), "-c", "import os, sys; print(os.getppid()); sys.exit(5)"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 5 and int(proc.stdout) != server.pid


def test_without_a_server_the_shim_runs_the_real_interpreter(tmp_path):
    path = warm.socket_path(f"absent{os.getpid()}", "python")
    shim = warm.write_python_shim(tmp_path / "python", path)
    proc = subprocess.run([str(shim), "-m", "json.tool"], input='{"a": 1}', capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"a": 1}


def test_python_server_ends_with_the_watched_process_and_cleans_up(python_server):
    exp_id, shim, server, _ = python_server
    sleeper = subprocess.Popen(["sleep", "1"])
    path = warm.socket_path(exp_id, "python")
    assert warm.python_server_pid(exp_id) == server.pid
    warm.watch(exp_id, sleeper.pid)
    sleeper.wait()
    server.wait(timeout=30)  # it ends by itself once the watched process (NNI's manager) has ended
    assert not path.exists() and not shim.exists() and not path.with_suffix(".pid").exists()
    assert warm.python_server_pid(exp_id) is None


def test_experiment_processes_finds_what_the_python_server_forked(python_server, tmp_path):
    exp_id, shim, server, _ = python_server
    (tmp_path / "sleeper_mod.py").write_text("import time\ntime.sleep(60)\n")
    client = subprocess.Popen([str(shim), "-m", "sleeper_mod"], cwd=tmp_path)
    try:
        deadline = time.time() + 30
        while len(launch.descendants(server.pid)) < 1 and time.time() < deadline:
            time.sleep(0.05)
        child = launch.descendants(server.pid)
        # forked: its command line is the server's and its environment does not name the experiment
        assert child and set(child) <= set(launch.experiment_processes(exp_id))
        assert server.pid in launch.experiment_processes(exp_id)
    finally:
        client.terminate()  # the client relays the signal to its forked child
        client.wait(timeout=30)
    deadline = time.time() + 10
    while launch.descendants(server.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert launch.descendants(server.pid) == []


def test_the_python_preload_covers_what_nni_imports():
    """A forked child imports nni fresh (its mode comes from its environment); with NNI_DEPENDENCIES loaded
    that must cost nni's own modules only: nothing else outside the standard library may still be imported."""
    code = (
        "import importlib, sys, json\n"
        "from facenas.adapters.nni import warm\n"
        "[importlib.import_module(m) for m in warm.NNI_DEPENDENCIES]\n"
        "before = set(sys.modules)\n"
        "import nni, nni.__main__, nni.runtime.command_channel.websocket.connection\n"
        "import nni.tools.nni_manager_scripts.collect_version_info\n"
        "import facenas.adapters.nni.advisor\n"
        "new = [m for m in set(sys.modules) - before if m.split('.')[0] not in ('nni', 'facenas')\n"
        "       and m.split('.')[0] not in sys.stdlib_module_names and not m.startswith('_')]\n"
        "print(json.dumps(sorted(new)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_manager_command_is_nnis_own(tmp_path):
    """facenas starts NNI's manager before nni is imported: its command must be the one NNI 3.0 builds."""
    from nni.experiment.config import ExperimentConfig
    from nni.experiment.launcher import NniManagerArgs

    env = launch.nni_env(home=tmp_path / "home", config_dir=tmp_path / "cfg")
    (tmp_path / "key").write_text("not a key: nothing connects\n")
    remote = {"trainingService": {"platform": "remote",
                                  "machineList": [{"host": "127.0.0.1", "user": "u", "sshKeyFile": str(tmp_path / "key")}]}}
    for debug, overrides in ((False, {}), (True, {}), (False, {"logLevel": "trace"}), (True, {"logLevel": "warning"}),
                             (False, remote)):
        cfg, _ = launch.prepare_config(REPO / "recipes" / "nni" / "toy_test.yml", overrides, env)
        workdir = launch.working_directory(cfg, env)
        cfg["experimentWorkingDirectory"] = workdir
        cfg["tuner"] = {"name": "Random"}  # the facenas advisors are not registered in this temporary home
        args = NniManagerArgs("create", "abcd1234", ExperimentConfig(**cfg).canonical_copy(), 17481, debug, False, None, None)
        ours = launch._manager_command("abcd1234", 17481, launch._manager_mode(cfg), workdir,
                                       launch._manager_log_level(cfg, debug), args.python_interpreter)
        assert ours[4:] == args.to_command_line_args(), (debug, overrides)
    assert launch.working_directory({}, {"HOME": str(tmp_path)}) == str(tmp_path / "nni-experiments")
    assert launch.working_directory({"experimentWorkingDirectory": "~/x"}, {"HOME": str(tmp_path)}) == str(tmp_path / "x")


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    statuses: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"status": self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]}) \
            if self.path.endswith("/check-status") else "[]"
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args) -> None:
        pass


def test_wait_done_polls_the_status_until_the_experiment_ends():
    _StatusHandler.statuses = ["RUNNING", "RUNNING", "TUNER_NO_MORE_TRIAL", "DONE"]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 17483), _StatusHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t0 = time.time()
        assert launch.wait_done(17483, timeout=30, poll=0.05) == "DONE"
        assert time.time() - t0 < 5
        _StatusHandler.statuses = ["RUNNING"]
        with pytest.raises(FacenasError, match="did not end within"):
            launch.wait_done(17483, timeout=0.3, poll=0.05)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
@pytest.mark.nni
def test_create_wait_runs_toy_test_with_nni_processes_forked_and_leaves_nothing(tmp_path):
    """``facenas nni create --wait`` end to end: NNI's manager started in-process, the dispatcher and the
    version probe forked from the python server (the dispatcher in NNI's dispatcher mode: its own log
    file), DONE with the injected failure, and after ``nnictl stop`` no process or file of it left."""
    env = launch.nni_env(home=tmp_path / "home", config_dir=tmp_path / "cfg")
    port = 17485
    proc = subprocess.run([sys.executable, "-m", "facenas", "nni", "create", str(REPO / "recipes/nni/toy_test.yml"),
                           "--port", str(port), "--wait", "--json", "--timeout", "600"], env=env, capture_output=True,
                          text=True, timeout=700)
    info = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    exp_id = info["experiment_id"]
    try:
        assert proc.returncode == 0 and info["status"] == "DONE" and info["python_server"], proc.stderr[-3000:]
        trials = launch.RestClient(port).trials()
        assert len(trials) == 8 and sum(t["status"] == "FAILED" for t in trials) == 1
        log_dir = tmp_path / "home" / "nni-experiments" / exp_id / "log"
        served = (log_dir / "facenas_python_server.log").read_text()
        assert "runs -m nni," in served and "runs -m nni.tools.nni_manager_scripts.collect_version_info" in served
        assert "Dispatcher started" in (log_dir / "dispatcher.log").read_text()
        assert warm.python_server_pid(exp_id) is not None
    finally:
        watched = launch.experiment_processes(exp_id)
        launch.stop(exp_id, env=env)
        deadline = time.time() + 30
        while launch.experiment_processes(exp_id, watched) and time.time() < deadline:
            time.sleep(0.2)
        left = launch.experiment_processes(exp_id, watched)
        launch.terminate(left)
    assert left == [] and launch.listening_sockets(port) == []
    assert not list(warm.socket_path(exp_id, "python").parent.glob(f"{exp_id}.*"))


@pytest.mark.slow
@pytest.mark.nni
def test_create_refusing_a_file_leaves_no_experiment_behind(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("trialCommand: python -m facenas.adapters.nni.trial\ntrialConcurrency: 1\n"
                   "trainingService: {platform: local}\n"
                   "tuner: {name: FacenasPipeline, classArgs: {name: x, steps: [{name: a, stage: toy.nosuch}]}}\n")
    env = launch.nni_env(home=tmp_path / "home", config_dir=tmp_path / "cfg")
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "facenas", "nni", "create", str(bad), "--port", "17487"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "unknown stage 'toy.nosuch'" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in (tmp_path / "home" / "nni-experiments").iterdir() if not p.name.startswith(("_", "."))] == []
    assert launch.listening_sockets(17487) == []
    assert not [p for p in warm.socket_path("x", "python").parent.glob("*.python*") if p.stat().st_mtime > started]
