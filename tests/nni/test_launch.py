"""Launcher pieces: environment (loopback shim, PATH, isolation), config preparation, registration, REST."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facenas.adapters.nni import launch
from facenas.adapters.nni.space import search_space_json
from facenas.cli import main as facenas_main
from facenas.errors import ConfigError, FacenasError

REPO = Path(__file__).resolve().parents[2]
TOY_TEST = REPO / "recipes" / "nni" / "toy_test.yml"


def test_nni_env_loads_the_node_shims_and_this_python(tmp_path):
    env = launch.nni_env({"PATH": "/usr/bin", "NODE_OPTIONS": "--max-old-space-size=512"}, home=tmp_path / "h",
                         config_dir=tmp_path / "c", output_root=tmp_path / "o", bind_host="127.0.0.1")
    assert env["NODE_OPTIONS"] == f"--max-old-space-size=512 --require {launch.LOOPBACK_JS} --require {launch.POLL_JS}"
    assert launch.nni_env(env)["NODE_OPTIONS"] == env["NODE_OPTIONS"]  # idempotent
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["HOME"] == str((tmp_path / "h").resolve()) and env["NNI_CONFIG_DIR"] == str((tmp_path / "c").resolve())
    assert env["FACENAS_NNI_OUTPUT"] == str((tmp_path / "o").resolve()) and env["CI"] == "true"
    assert launch.nni_config_dir(env) == (tmp_path / "c").resolve()


def _node() -> str:
    import nni_node

    return str(Path(nni_node.__path__[0]) / "node")


@pytest.mark.nni
@pytest.mark.parametrize("bind", [None, "127.0.0.1"])
def test_loopback_shim_binds_node_servers_to_loopback(bind):
    """NNI's server calls app.listen(port) with no host; with the shim Node binds 127.0.0.1 only."""
    script = ("const http=require('http');const s=http.createServer();"
              "s.listen(0,()=>{console.log(JSON.stringify(s.address()));s.close();});")
    env = launch.nni_env(bind_host=bind)
    out = subprocess.run([_node(), "-e", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["address"] == "127.0.0.1"
    bare = dict(env, NODE_OPTIONS="")
    out = subprocess.run([_node(), "-e", script], env=bare, capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout)["address"] == "::"  # what NNI does without it: every interface


@pytest.mark.nni
@pytest.mark.parametrize("poll, nni_interval, expected", [
    (None, 0.5, 0.1),  # the default: NNI's local/remote poll lowered
    ("0.25", 0.5, 0.25),
    ("0", 0.5, 0.5),  # 0: NNI's own
    (None, 5, 5),  # an interval NNI chose for a service that polls remote APIs: left alone
])
def test_poll_shim_lowers_the_managers_trial_poll(tmp_path, poll, nni_interval, expected):
    """A module exporting NNIManager (as NNI's core/nnimanager.js does) gets its trial loop's interval lowered."""
    (tmp_path / "nnimanager.js").write_text(
        "class NNIManager { constructor(i) { this.pollInterval = i; }\n"
        "  async manageTrials() { return this.pollInterval; } }\n"
        "exports.NNIManager = NNIManager;\n")
    script = (f"const {{ NNIManager }} = require({json.dumps(str(tmp_path / 'nnimanager.js'))});"
              f"new NNIManager({nni_interval}).manageTrials().then(v => console.log(v));")
    env = launch.nni_env()
    env.pop("FACENAS_NNI_POLL_S", None)
    if poll is not None:
        env["FACENAS_NNI_POLL_S"] = poll
    out = subprocess.run([_node(), "-e", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == expected
    bare = dict(env, NODE_OPTIONS="")
    out = subprocess.run([_node(), "-e", script], env=bare, capture_output=True, text=True, timeout=60)
    assert float(out.stdout) == nni_interval  # without the shim: NNI's


def test_prepare_config_makes_paths_absolute_and_generates_the_search_space():
    cfg, warnings = launch.prepare_config(TOY_TEST)
    assert warnings == []
    assert cfg["searchSpace"] == search_space_json("toy") and "searchSpaceFile" not in cfg
    assert Path(cfg["trialCodeDirectory"]).is_absolute() and Path(cfg["trialCodeDirectory"]) == TOY_TEST.parent
    assert cfg["tuner"]["name"] == "FacenasPipeline"


def test_prepare_config_warns_and_fails_early(tmp_path):
    data = yaml.safe_load(TOY_TEST.read_text())
    data.pop("searchSpaceFile")
    data["searchSpace"] = {"x": {"_type": "choice", "_value": [1]}}
    data["trialCommand"] = "python train.py"
    (tmp_path / "a.yml").write_text(yaml.safe_dump(data))
    cfg, warnings = launch.prepare_config(tmp_path / "a.yml")
    assert cfg["searchSpace"] == search_space_json("toy")
    assert any("differs" in w for w in warnings) and any("does not run" in w for w in warnings)
    data["tuner"]["classArgs"]["steps"][0]["stage"] = "toy.train_supernett"
    (tmp_path / "b.yml").write_text(yaml.safe_dump(data))
    with pytest.raises(FacenasError, match="did you mean 'toy.train_supernet'"):
        launch.prepare_config(tmp_path / "b.yml")
    (tmp_path / "c.yml").write_text("trainingServicePlatform: local\n")
    with pytest.raises(ConfigError, match="v1 config"):
        launch.prepare_config(tmp_path / "c.yml")


def test_rest_metric_decoding_and_loopback_only():
    assert launch.decode_metric(json.dumps(json.dumps({"default": 0.5, "lfw_acc": 0.9}))) == {"default": 0.5, "lfw_acc": 0.9}
    assert launch.decode_metric("0.25") == 0.25
    with pytest.raises(FacenasError, match="only talks to NNI on loopback"):
        launch.RestClient(8080, host="192.0.2.1")


def test_listening_sockets_and_free_port():
    port = launch.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert launch.listening_sockets(port) == ["127.0.0.1"]
    assert launch.listening_sockets(port) == []


@pytest.mark.nni
def test_register_is_idempotent_and_isolated(tmp_path, capsys):
    env = launch.nni_env(config_dir=tmp_path / "cfg")
    assert launch.register(env) == ["FacenasPipeline", "FacenasSearch"]
    assert launch.registered_algorithms(env) == {
        "FacenasPipeline": "facenas.adapters.nni.advisor.PipelineAdvisor",
        "FacenasSearch": "facenas.adapters.nni.advisor.SearchAdvisor"}
    assert launch.register(env) == []  # already there: no nnictl call
    meta = yaml.safe_load((tmp_path / "cfg" / "registered_algorithms.yml").read_text())
    assert all(a.get("isAdvisor") for a in meta["tuners"])  # NNI 3.0 stores advisors as tuners


def test_cli_space_and_results(tmp_path, capsys):
    assert facenas_main(["nni", "space", "toy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == search_space_json("toy")
    assert facenas_main(["nni", "space", "toy", "--output", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == search_space_json("toy")
    assert facenas_main(["nni", "results", "nope", "--experiment-dir", str(tmp_path)]) == 2
    assert "no facenas output found" in capsys.readouterr().err


def test_an_ended_child_is_reaped_so_its_pid_is_gone():
    """NNI's manager started by ``create`` in a long-lived process: once it ends, its pid must not stay
    a zombie (``nnictl stop`` waits up to 60 s for the pid to disappear)."""
    import subprocess
    import time

    import psutil

    from facenas.adapters.nni.launch import reap_when_done

    proc = subprocess.Popen(["sleep", "0.2"])
    reap_when_done(proc).join(timeout=30)
    deadline = time.time() + 30
    while psutil.pid_exists(proc.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(proc.pid)
    assert proc.returncode == 0
