"""NNI's ``remote`` training service over real SSH: two OpenSSH servers on 127.0.0.1 as two machines.

Set-up (as root; ``tests/nni/install_sshd.sh`` installs Debian's ``openssh-server`` when ``sshd``
is missing): keys generated into the test's temporary folder, and one ``sshd`` per machine with its
own config there (``AuthorizedKeysFile`` in the temp folder, ``StrictModes no``, listening on
127.0.0.1 only; root's ``~/.ssh`` is not touched). Each server gives its sessions their own
``HOME`` (``SetEnv``), so each "machine" keeps NNI's trial folders apart, as two hosts would; the
venv's ``bin`` is the machines' ``pythonPath``. ``PIP_NO_INDEX=1`` keeps the ``pip install nni
--upgrade`` NNI runs on each machine offline, and ``NODE_OPTIONS`` loads facenas's loopback.js
into NNI's trial keeper there (its REST server would otherwise listen on every interface).

- ``tnas_test.yml`` and ``ofa_test.yml`` with their ``trainingService`` switched to ``remote``
  (two machines) run through nnictl to DONE, every trial SUCCEEDED, trials on both machines; the
  experiment output root is an absolute folder both "machines" read (the same file system: shared
  storage), so step-to-step references (``${teacher.result.output}/last.pt``) work across them.
- Fail-fast: the second machine runs in its own mount namespace where an earlier step's output
  folder is an empty tmpfs (as on a machine without the shared storage); the trial it gets refers
  to that step's checkpoint and fails before its stage runs, with one line naming the path and
  NNI's ``sharedStorage`` option; the pipeline goes on.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from facenas.adapters.nni import launch
from facenas.adapters.nni.e2e import run_experiment_e2e

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "nni"
INSTALL = Path(__file__).with_name("install_sshd.sh")
SSH_PORTS = (17122, 17123)
NNI_PORTS = {"tnas_test": 17160, "ofa_test": 17162, "fail_fast": 17164}  # one per test: a closed port lingers in TIME_WAIT

pytestmark = [pytest.mark.nni, pytest.mark.slow, pytest.mark.timeout(1800)]


def _sshd() -> str:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("sshd is missing and the test is not root: apt-get install openssh-server")
    proc = subprocess.run(["sh", str(INSTALL)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"{INSTALL} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return shutil.which("sshd") or "/usr/sbin/sshd"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Machines:
    """Two sshd processes on 127.0.0.1, each a "machine" with its own HOME; the second optionally
    in a private mount namespace with an empty tmpfs over ``hidden`` (a folder it cannot see)."""

    def __init__(self, root: Path, hidden: Path | None = None):
        if os.geteuid() != 0:
            pytest.skip("the remote test logs in as root over SSH on 127.0.0.1 (runs as root)")
        sshd = _sshd()
        for port in SSH_PORTS:
            if _listening(port):
                pytest.skip(f"port {port} is taken on 127.0.0.1")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.key = root / "id_ed25519"
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(self.key), "-C", "facenas-test"], check=True)
        subprocess.run([*keygen, "-f", str(root / "host_ed25519")], check=True)
        shutil.copy(f"{self.key}.pub", root / "authorized_keys")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation folder
        self.homes = [root / f"machine{i + 1}" for i in range(len(SSH_PORTS))]
        self.procs: list[subprocess.Popen] = []
        for i, (port, home) in enumerate(zip(SSH_PORTS, self.homes)):
            home.mkdir()
            cfg = root / f"sshd_{port}.conf"
            cfg.write_text("\n".join([
                f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_ed25519'}",
                f"PidFile {root / f'sshd_{port}.pid'}", f"AuthorizedKeysFile {root / 'authorized_keys'}",
                "StrictModes no", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "UsePAM no", "AllowUsers root", "Subsystem sftp internal-sftp",
                f'SetEnv HOME={home} PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 '
                f'NODE_OPTIONS="--require {launch.LOOPBACK_JS}"', "",
            ]))
            cmd = [sshd, "-D", "-e", "-f", str(cfg)]
            if hidden is not None and i == 1:
                hidden.mkdir(parents=True, exist_ok=True)
                cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       f"mount -t tmpfs facenas-test-unshared {hidden} && exec {' '.join(cmd)}"]
            log = open(root / f"sshd_{port}.log", "wb")
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.time() + 20
        while not all(_listening(p) for p in SSH_PORTS):
            if time.time() > deadline or any(p.poll() is not None for p in self.procs):
                self.close()
                logs = "\n".join((root / f"sshd_{p}.log").read_text(errors="replace") for p in SSH_PORTS)
                pytest.fail(f"sshd did not start:\n{logs}")
            time.sleep(0.2)

    def ssh(self, port: int, command: str) -> str:
        out = subprocess.run(["ssh", "-i", str(self.key), "-p", str(port), "-o", "BatchMode=yes",
                              "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                              "root@127.0.0.1", command], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def training_service(self) -> dict:
        venv_bin = str(Path(sys.executable).parent)
        return {"platform": "remote", "machineList": [
            {"host": "127.0.0.1", "port": port, "user": "root", "sshKeyFile": str(self.key), "pythonPath": venv_bin}
            for port in SSH_PORTS]}

    def machine_of(self, cwd: str | None) -> int | None:
        """Which machine (1, 2) a trial ran on, from its working directory (under that machine's HOME)."""
        for i, home in enumerate(self.homes):
            if cwd and Path(cwd).resolve().is_relative_to(home.resolve()):
                return i + 1
        return None

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        # NNI's trial keepers detach from the SSH session: end the ones started under our machines' HOMEs
        mine = str(self.root).encode()
        left = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if mine in (entry / "cmdline").read_bytes() or mine in (entry / "environ").read_bytes():
                        left.append(int(entry.name))
                except OSError:
                    continue
        launch.terminate(left)
        self.leftovers = left


@pytest.fixture
def machines(tmp_path):
    m = Machines(tmp_path / "ssh")
    yield m
    m.close()


def _overrides(machines: Machines) -> dict:
    return {"trainingService": machines.training_service(), "nniManagerIp": "127.0.0.1"}


def _trial_machines(res, machines: Machines) -> dict[str, int | None]:
    out = {}
    for t in res.trials:
        env = (t.get("parameters") or {}).get("facenas") or {}
        params = json.loads((Path(env["out_dir"]) / "params.json").read_text())
        out[t["trial_id"]] = machines.machine_of(params["nni"].get("cwd"))
    return out


def test_two_ssh_machines_are_reachable(machines):
    """The set-up itself: key login on both ports, each session with its own HOME, sshd on loopback only."""
    homes = [machines.ssh(port, "echo $HOME") for port in SSH_PORTS]
    assert homes == [str(h) for h in machines.homes]
    for port in SSH_PORTS:
        assert launch.listening_sockets(port) == ["127.0.0.1"]


@pytest.mark.parametrize("name", ["tnas_test", "ofa_test"])
def test_method_pipeline_runs_on_two_remote_machines(machines, tmp_path, name):
    """tnas_test / ofa_test over NNI remote (two SSH machines): DONE, every trial SUCCEEDED, both machines used."""
    shared = tmp_path / "shared-output"  # absolute, and the same file system on both "machines"
    res = run_experiment_e2e(RECIPES / f"{name}.yml", timeout=1500, overrides=_overrides(machines), port=NNI_PORTS[name],
                             output_root=shared)
    assert res.status == "DONE" and not res.failed() and res.leftover_processes == []
    assert Path(res.output_dir).is_relative_to(shared)
    where = _trial_machines(res, machines)
    assert set(where.values()) == {1, 2}, where
    # step-to-step references crossed machines: a trial read an artefact a trial on the other machine wrote
    machine_of_dir = {}
    for t in res.trials:
        env = t["parameters"]["facenas"]
        machine_of_dir[env["out_dir"]] = where[t["trial_id"]]
    crossed = []
    for t in res.trials:
        env = t["parameters"]["facenas"]
        for path in json.loads((Path(env["out_dir"]) / "params.json").read_text()).get("inputs") or []:
            producer = [d for d in machine_of_dir if path == d or path.startswith(d + "/")]
            assert producer, (path, sorted(machine_of_dir))
            if machine_of_dir[producer[0]] != where[t["trial_id"]]:
                crossed.append((env["step"], path))
    assert crossed, "no trial read an artefact written on the other machine"


def test_unreadable_reference_on_a_remote_machine_fails_fast(tmp_path):
    """Machine 2 does not see the first step's output folder: its trial fails before its stage, naming the
    path and sharedStorage; the experiment goes on (the third trial runs on machine 1 and succeeds)."""
    out = tmp_path / "shared" / "out"
    machines = Machines(tmp_path / "ssh", hidden=out / "make")
    try:
        yml = tmp_path / "remote_fail_fast.yml"
        yml.write_text(yaml.safe_dump({
            "experimentName": "facenas-remote-fail-fast", "searchSpaceFile": str(RECIPES / "spaces" / "toy.json"),
            "trialCommand": "python -m facenas.adapters.nni.trial", "trialCodeDirectory": str(RECIPES),
            "trialConcurrency": 1, "maxTrialNumber": 6, "maxExperimentDuration": "15m",
            "tuner": {"name": "FacenasPipeline", "classArgs": {"name": "remote_fail_fast", "output_dir": str(out), "steps": [
                # trial 0 -> machine 1 (NNI's remote service hands trials to machines in turn)
                {"name": "make", "stage": "toy.train_supernet", "params": {"epochs": 1}},
                # trial 1 -> machine 2, where make/000/supernet... is not visible
                {"name": "use", "stage": "toy.evaluate", "space": "toy", "params": {
                    "sample": {"stem/width": 8, "block/kernel_size": 3, "block/depth": 1, "block/op": "conv"},
                    "supernet": "${make.result.checkpoint}", "epochs": 1}},
                # trial 2 -> machine 1: the pipeline went on
                {"name": "after", "stage": "toy.evaluate", "space": "toy", "params": {
                    "sample": {"stem/width": 16, "block/kernel_size": 5, "block/depth": 2, "block/op": "conv"}, "epochs": 1}},
            ]}},
            **_overrides(machines),
        }))
        res = run_experiment_e2e(yml, timeout=600, expect_failed=1, port=NNI_PORTS["fail_fast"])
    finally:
        machines.close()
    assert machines.leftovers == []
    where = _trial_machines(res, machines)
    failed = res.failed()
    assert len(failed) == 1 and where[failed[0]["trial_id"]] == 2, where
    env = failed[0]["parameters"]["facenas"]
    assert env["step"] == "use"
    record = json.loads((Path(env["out_dir"]) / "result.json").read_text())
    checkpoint = json.loads((out / "make" / "000" / "result.json").read_text())["result"]["checkpoint"]
    assert record["error"].startswith("UnreadableInputError:") and "\n" not in record["error"]
    assert checkpoint in record["error"] and "sharedStorage" in record["error"]
    assert record["duration_s"] < 1.0  # failed before the stage ran
    assert not (Path(env["out_dir"]) / "metrics.jsonl").exists()
    # the one line is in the trial's log on machine 2
    logs = list(machines.homes[1].rglob(f"trials/{failed[0]['trial_id']}/trial.*"))
    assert any("sharedStorage" in p.read_text(errors="replace") for p in logs), logs
    assert sorted(t["parameters"]["facenas"]["step"] for t in res.succeeded()) == ["after", "make"]
