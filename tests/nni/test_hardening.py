"""NNI hardening (issue 18, item 7): the REST API answers loopback Host names only (DNS rebinding),
`facenas nni create` checks the experiment file with one line, a reference to an unknown step is a
load-time error, and `facenas nni results` gives killed / cancelled trials their real status."""
from __future__ import annotations

import http.client
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from facenas.adapters.nni import launch
from facenas.adapters.nni.pipeline import PipelineConfig
from facenas.adapters.nni.results import summarize
from facenas.cli import main as facenas_main
from facenas.errors import ConfigError
from facenas.utils.io import write_json
from facenas.utils.lock import holder_record

from .conftest import start_toy_experiment, stop_and_check_nothing_left

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "nni"


def _request(port: int, method: str, path: str, host: str | None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


# -- the Host check in the loopback shim -----------------------------------------------------------
@pytest.mark.nni
def test_the_shim_refuses_requests_naming_a_non_loopback_host():
    import nni_node

    node = str(Path(nni_node.__path__[0]) / "node")
    script = ("const http=require('http');const s=http.createServer((q,r)=>{r.end('reached '+q.method)});"
              "s.listen(0,()=>{console.log(JSON.stringify(s.address()));});")
    proc = subprocess.Popen([node, "-e", script], env=launch.nni_env(), stdout=subprocess.PIPE, text=True)
    try:
        port = json.loads(proc.stdout.readline())["port"]
        for host in ("evil.example", "evil.example:80", "localhost.evil.example", "127.0.0.1.nip.io", "[::1]x",
                     f"127.0.0.1:{port}@evil.example"):
            status, body = _request(port, "DELETE", "/api/v1/nni/experiment", host)
            assert status == 403 and "reached" not in body and "DNS rebinding" in body, (host, status, body)
        for host in (f"127.0.0.1:{port}", "127.0.0.1", "localhost", f"LOCALHOST:{port}", f"[::1]:{port}", None):
            assert _request(port, "DELETE", "/x", host) == (200, "reached DELETE"), host
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
@pytest.mark.nni
def test_a_rebinding_delete_does_not_stop_a_running_experiment(tmp_path):
    """curl -X DELETE -H 'Host: evil.example' http://127.0.0.1:PORT/api/v1/nni/experiment -> 403, still running."""
    env, port, info = start_toy_experiment(tmp_path)
    exp_id = info["experiment_id"]
    try:
        client = launch.RestClient(port)
        client.wait_reachable()
        assert client.status()["status"] in ("RUNNING", "TUNER_NO_MORE_TRIAL", "INITIALIZED")
        curl = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H",
                               "Host: evil.example", f"http://127.0.0.1:{port}/api/v1/nni/experiment"],
                              capture_output=True, text=True, timeout=30) if _has_curl() else None
        code = int(curl.stdout) if curl is not None else _request(port, "DELETE", "/api/v1/nni/experiment",
                                                                  "evil.example")[0]
        assert code == 403
        assert _request(port, "PUT", "/api/v1/nni/experiment?update_type=MAX_TRIAL_NUMBER", "evil.example")[0] == 403
        time.sleep(3)
        assert client.status()["status"] not in ("STOPPED", "STOPPING", "ERROR")  # NNI never saw the request
        assert launch.listening_sockets(port) == ["127.0.0.1"]
    finally:
        stop_and_check_nothing_left(exp_id, env)


def _has_curl() -> bool:
    import shutil

    return shutil.which("curl") is not None


# -- `facenas nni create` checks the experiment file -------------------------------------------------
@pytest.mark.parametrize("change,expected", [
    (lambda c: c["tuner"].update(name="TPEE"), "tuner.name: 'TPEE' is not a built-in or registered NNI algorithm; "
                                               "did you mean 'TPE'"),
    (lambda c: c.pop("searchSpaceFile"), "searchSpaceFile: missing"),
    (lambda c: c.update(trialConcurrency=-3), "trialConcurrency: -3 is not a positive integer"),
    (lambda c: c.update(trialConcurency=2), "did you mean 'trialConcurrency'"),
    (lambda c: c["trainingService"].update(platform="locall"), "did you mean 'local'"),
    (lambda c: c.update(maxExperimentDuration="10x"), "Bad unit"),
])
def test_nni_create_checks_the_experiment_file_with_one_line(tmp_path, capsys, change, expected):
    data = yaml.safe_load((RECIPES / "toy_tpe_test.yml").read_text())
    data["searchSpaceFile"] = str(RECIPES / "spaces" / "toy.json")
    data["trialCodeDirectory"] = str(RECIPES)
    change(data)
    path = tmp_path / "exp.yml"
    path.write_text(yaml.safe_dump(data))
    code = facenas_main(["nni", "create", str(path), "--port", "18299", "--output-root", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert "Traceback" not in err and str(path) in err


def test_a_misspelt_facenas_advisor_is_refused_with_its_name(tmp_path):
    data = yaml.safe_load((RECIPES / "toy_test.yml").read_text())
    data["tuner"]["name"] = "FacenasPipline"
    data["searchSpaceFile"] = str(RECIPES / "spaces" / "toy.json")
    (tmp_path / "toy.yml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="did you mean 'FacenasPipeline'"):
        launch.prepare_config(tmp_path / "toy.yml")


# -- references to unknown steps fail at load time ---------------------------------------------------
@pytest.mark.parametrize("ref,expected", [
    ("${nope.result.x}", "names no step 'nope'"),
    ("${supernt.result.x}", "did you mean 'supernet'"),
    ("${later.out_dir}/x", "does not run before it"),
    ("${a b}", "bad reference"),
])
def test_a_reference_to_an_unknown_or_later_step_is_a_load_time_error(ref, expected):
    steps = [{"name": "supernet", "stage": "toy.evaluate"},
             {"name": "use", "stage": "toy.evaluate", "params": {"x": ref}},
             {"name": "later", "stage": "toy.evaluate"}]
    with pytest.raises(ConfigError, match=expected):
        PipelineConfig.from_dict({"steps": steps})
    ok = [dict(steps[0]), {**steps[1], "params": {"x": "${supernet.result.x}", "y": "$${nope}", "i": "${index}"}}]
    PipelineConfig.from_dict({"steps": ok})  # a known earlier step, an escaped one, a context name


# -- `facenas nni results` statuses -----------------------------------------------------------------
def _trial(root: Path, name: str, trial_id: str, process: dict | None = None, result: str | None = None) -> Path:
    folder = root / "step" / name
    rec = {"stage": "toy.evaluate", "step": "step", "index": int(name), "attempt": 0, "out_dir": str(folder),
           "params": {}, "nni": {"trial_id": trial_id}}
    if process is not None:
        rec["process"] = process
    write_json(folder / "params.json", rec)
    if result is not None:
        write_json(folder / "result.json", {**rec, "status": result, "metrics": {"default": 0.5}})
    return folder


def test_results_give_killed_and_cancelled_trials_their_status(tmp_path):
    exp = tmp_path / "exp1"
    root = exp / "facenas"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _trial(root, "000", "Aaaaa", result="SUCCEEDED")
        _trial(root, "001", "Bbbbb")  # NNI cancelled it (nnictl stop / the portal's kill)
        _trial(root, "002", "Ccccc")  # an assessor stopped it early
        _trial(root, "003", "Ddddd", process={**holder_record(), "pid": int(dead.stdout)})  # kill -9, no record
        four = _trial(root, "004", "Eeeee")  # the advisor was told it was cancelled by the system
        _trial(root, "005", "Fffff", process={**holder_record(), "pid": live.pid, "start_ticks": None})
        (exp / "db").mkdir()
        con = sqlite3.connect(exp / "db" / "nni.sqlite")
        con.execute("create table TrialJobEvent (timestamp integer, trialJobId text, event text, data text, "
                    "logPath text, sequenceId integer, message text, environmentId text)")
        events = [(1, "Aaaaa", "RUNNING"), (2, "Aaaaa", "SUCCEEDED"), (3, "Bbbbb", "RUNNING"),
                  (4, "Bbbbb", "USER_CANCELED"), (5, "Bbbbb", "RUNNING"),  # a late poll must not revive it
                  (6, "Ccccc", "RUNNING"), (7, "Ccccc", "EARLY_STOPPED"), (8, "Ddddd", "RUNNING"),
                  (9, "Fffff", "RUNNING")]
        con.executemany("insert into TrialJobEvent (timestamp, trialJobId, event) values (?, ?, ?)", events)
        con.commit()
        con.close()
        write_json(root / "advisor_state.json", {"status": "finished", "steps": [{"name": "step", "stage": "toy.evaluate",
                                                                                  "status": "done"}],
                                                 "units": [{"out_dir": str(four), "nni_status": "SYS_CANCELED"}]})
        summary = summarize(root)
    finally:
        live.kill()
        live.wait()
    status = {r["index"]: r["status"] for r in summary["trials"]}
    assert status == {0: "SUCCEEDED", 1: "USER_CANCELED", 2: "EARLY_STOPPED", 3: "LOST", 4: "SYS_CANCELED",
                      5: "RUNNING"}
    assert summary["steps"][0]["stopped"] == 4 and summary["steps"][0]["succeeded"] == 1


def test_a_trial_records_its_process_for_the_results(tmp_path):
    from facenas.adapters.nni.envelope import TrialSpec
    from facenas.adapters.nni.trial import run_trial

    spec = TrialSpec(stage="toy.evaluate", params={"sample": {}}, step="s", index=0)
    run_trial(spec, tmp_path / "t")
    proc = json.loads((tmp_path / "t" / "params.json").read_text())["process"]
    assert proc["pid"] == os.getpid() and proc["host"]


def test_an_experiment_file_that_is_not_yaml_is_one_line(tmp_path):
    (tmp_path / "bad.yml").write_text("a: [1,\n")
    with pytest.raises(ConfigError) as info:
        launch.load_yaml(tmp_path / "bad.yml")
    assert "\n" not in str(info.value) and "line 2, column 1: not valid YAML" in str(info.value)
