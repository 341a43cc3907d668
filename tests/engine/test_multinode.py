"""torchrun across nodes: ``--nnodes=2 --nproc_per_node=1`` with c10d rendezvous on 127.0.0.1 (gloo).

For ``facenas train`` (engine.train) and ``facenas ofa train`` (the OFA supernet):

- two single-process "nodes" give the metrics and weights of the single-node 2-process run;
- ``kill -9`` of one node mid-run: the survivor stops within the process-group timeout with one
  line (``lost a peer process`` ... ``--resume``), exit code 3, and the checkpoints left behind
  resume on two nodes to the uninterrupted run's weights.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from facenas.adapters.nni.launch import descendants

from .conftest import TINY_RECIPE

pytestmark = pytest.mark.slow

ENGINE_RECIPE = TINY_RECIPE.replace("{epochs}", "10").replace("{workers}", "0").replace("{val_every}", "5") \
    .replace("{checkpoint_every}", "2")

OFA_RECIPE = """
from facenas.plugins.ofa.train import progressive_shrinking_phases
config = dict(space="ofa_tiny", rec={rec!r}, batch_size=16, num_workers=0, image_size=32, calibration_images=32,
              seed=5, threads=1, kd_type="embedding", checkpoint_every=2, val_targets=[{val!r}],
              phases=progressive_shrinking_phases({{"full": 1, "kernel": 0.5, "depth_1": 0.5, "depth_2": 0.5,
                                                    "expand_1": 0.5, "expand_2": 0.5}}))
"""

JOBS = {
    "engine": (["train"], ENGINE_RECIPE, "backbone", 70),
    "ofa": (["ofa", "train"], OFA_RECIPE, "supernet", None),
}
# the ports this project gives these tests for rendezvous (see the helpers' brief: 29600-29699)
PORTS = range(29600, 29700)


def _port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free rendezvous port in 29600-29699")


def _env() -> dict[str, str]:
    # gloo over loopback only; a silent peer is given up on after 60 s (the survivor must not hang)
    return {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "FACENAS_DIST_TIMEOUT": "60",
            "PYTHONUNBUFFERED": "1"}


def _node(command: list[str], node_rank: int, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", f"--node_rank={node_rank}",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=facenas{port}",
           "--local-addr=127.0.0.1", "--max-restarts=0", "-m", "facenas.cli", *command]
    # a session of its own: "kill the node" = SIGKILL to its launcher and its worker
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=_env(), start_new_session=True)


def _two_nodes(command: list[str], logs: Path, tag: str) -> list[subprocess.Popen]:
    port = _port()
    first = _node(command, 0, port, logs / f"{tag}_node0.log")
    time.sleep(1.0)  # node 0 hosts the rendezvous store
    return [first, _node(command, 1, port, logs / f"{tag}_node1.log")]


def _wait(procs: list[subprocess.Popen], timeout: float = 400) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                _kill_node(q)
            raise AssertionError(f"torchrun nodes still running after {timeout} s (a hang)")
    return codes


def _weights(out: Path, key: str) -> list[dict[str, torch.Tensor]]:
    return [torch.load(out / f"checkpoint_rank{r}.pt", weights_only=True)[key] for r in (0, 1)]


def _assert_same(a: list[dict], b: list[dict], atol: float = 1e-5) -> None:
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if ra[k].is_floating_point():
                torch.testing.assert_close(rb[k], ra[k], rtol=1e-4, atol=atol, msg=k)
            else:
                assert torch.equal(ra[k], rb[k]), k


def _kill_node(proc: subprocess.Popen) -> None:
    """``kill -9`` of a node: its launcher and every process under it."""
    for pid in [proc.pid, *descendants(proc.pid)]:  # torchrun starts its workers in sessions of their own
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["global_step"])
    except Exception:  # being replaced right now
        return -1


@pytest.mark.parametrize("job", sorted(JOBS))
def test_two_nodes_match_one_node_and_survive_a_killed_node(tmp_path, synthetic_data, job):
    command, recipe_text, key, steps = JOBS[job]
    recipe = tmp_path / "recipe.py"
    recipe.write_text(recipe_text.format(rec=str(synthetic_data), val=str(synthetic_data / "val.bin")))
    logs = tmp_path / "logs"
    logs.mkdir()
    run = [*command, str(recipe), "--json"]

    # the reference: one node, two processes
    one = tmp_path / "one_node"
    ref = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "facenas.cli", *run, "--output", str(one)],
                         capture_output=True, text=True, timeout=400, env=_env())
    assert ref.returncode == 0, ref.stderr[-3000:]

    # two nodes, one process each
    two = tmp_path / "two_nodes"
    assert _wait(_two_nodes([*run, "--output", str(two)], logs, "two")) == [0, 0], \
        (logs / "two_node0.log").read_text()[-3000:]
    final_one, final_two = (json.loads((d / "final.json").read_text()) for d in (one, two))
    assert final_two["global_step"] == final_one["global_step"] == (steps or final_one["global_step"])
    for name, value in final_one.items():
        if isinstance(value, float) and not name.endswith("seconds"):
            assert final_two[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    _assert_same(_weights(one, key), _weights(two, key))
    total = final_one["global_step"]

    # a node killed mid-run: the survivor fails fast with one line, the checkpoints resume
    killed = tmp_path / "killed"
    nodes = _two_nodes([*run, "--output", str(killed)], logs, "killed")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and all(p.poll() is None for p in nodes):
        if min(_step(killed / f"checkpoint_rank{r}.pt") for r in (0, 1)) >= 4:
            break
        time.sleep(0.05)
    assert all(p.poll() is None for p in nodes), "the run ended before a node could be killed; make it longer"
    _kill_node(nodes[1])
    t_kill = time.monotonic()
    nodes[1].wait()
    code = _wait([nodes[0]], timeout=200)[0]
    waited = time.monotonic() - t_kill
    survivor = (logs / "killed_node0.log").read_text()
    assert code != 0, survivor[-3000:]
    lines = [line for line in survivor.splitlines() if "lost a peer process" in line]
    assert len(lines) == 1, survivor[-3000:]
    assert lines[0].startswith(f"facenas {command[0]}: error: rank ") and "--resume" in lines[0]
    assert "checkpoint_rank" in lines[0] and "exitcode  : 3" in survivor
    assert "Traceback" not in survivor.split("lost a peer process")[0], survivor[-3000:]
    assert waited < 90, f"the survivor took {waited:.0f} s to stop"
    assert _step(killed / "checkpoint_rank0.pt") < total

    resumed = _two_nodes([*run, "--output", str(killed), "--resume"], logs, "resumed")
    assert _wait(resumed) == [0, 0], (logs / "resumed_node0.log").read_text()[-3000:]
    assert json.loads((killed / "final.json").read_text())["global_step"] == total
    _assert_same(_weights(one, key), _weights(killed, key))


@pytest.mark.parametrize("stage", ["engine.train", "ofa.train_supernet"])
def test_a_stage_runs_torchrun_inside_its_trial(tmp_path, synthetic_data, stage, monkeypatch):
    """``nproc_per_node: 2``: the stage launches 2 DDP processes, reports their epochs and returns the final metrics."""
    from facenas.nas.stages import run_stage_locally

    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    recipe = tmp_path / "recipe.py"
    text = ENGINE_RECIPE if stage == "engine.train" else OFA_RECIPE
    recipe.write_text(text.format(rec=str(synthetic_data), val=str(synthetic_data / "val.bin")))
    overrides = {"num_epoch": 2} if stage == "engine.train" else {}
    final = run_stage_locally(stage, {"config": str(recipe), "nproc_per_node": 2, **overrides}, str(tmp_path / "trial"))
    out = Path(final["output"] if stage == "engine.train" else Path(final["checkpoint"]).parent)
    assert out.resolve().is_relative_to(tmp_path.resolve()), f"{out}: outside the trial's folder"
    assert (out / "checkpoint_rank0.pt").is_file() and (out / "checkpoint_rank1.pt").is_file()
    assert "backend gloo, rank 1/2" in (out / "torchrun.log").read_text()
    records = [json.loads(line) for line in (tmp_path / "trial" / "metrics.jsonl").read_text().splitlines()]
    assert sum(1 for r in records if r.get("type") == "intermediate") >= 2
    if stage == "engine.train":
        assert final["global_step"] == 14 and final["mflops"] > 0 and "val_acc" in final
    else:
        assert Path(final["checkpoint"]).is_file() and final["phases_done"] == 6
