"""The alternating search (Algorithm 1) on synthetic identities: runs, reports, ranks, resumes exactly."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from facenas.errors import ConfigError
from facenas.plugins.enas.data import identity_split, load_search_data
from facenas.adapters.runtime.latency_model import LatencyModel
from facenas.plugins.enas.search import SearchConfig, child_lr_at, run_search, warped_cosine
from facenas.nas.flops import count_flops
from facenas.nas.report import LocalReporter
from facenas.nas.space import build_from_description, create_space



def flops_table(space) -> dict[str, float]:
    """A stand-in latency table for tests: 0.02 ms per block + 0.05 ms per million MACs."""
    return {b.key: 0.02 + 0.05 * count_flops(b.build(), (1, *b.input_shape)) / 1e6 for b in space.all_latency_blocks()}


@pytest.fixture(scope="module")
def search_data(synthetic_data):
    return load_search_data(str(synthetic_data), 32, (0.8, 0.1, 0.1), seed=0)


def tiny_config(synthetic_data, **over):
    space = create_space("enas_test")
    base = {"threads": None, "space": "enas_test", "rec": str(synthetic_data), "epochs": 2, "batch_size": 16, "steps_per_epoch": 3,
            "controller_steps": 2, "arcs_per_step": 3, "val_batch_size": 16, "candidates": 4, "top_k": 3,
            "reward": {"target_ms": 0.3, "exponent": -0.5}, "latency": {"table": flops_table(space)}, "seed": 1}
    return SearchConfig.from_dict({**base, **over})


def test_warped_cosine_eq6():
    assert warped_cosine(0.0) == pytest.approx(1.0)
    assert warped_cosine(1.0) == pytest.approx(0.0)
    assert warped_cosine(0.5) == pytest.approx((2 ** 1.5 - 2) / 2)
    lrs = [child_lr_at(s, 100, 10, 0.1, 1e-4) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] > 1e-4


def test_identity_split():
    labels = np.repeat(np.arange(5), [20, 10, 3, 2, 1])
    split = identity_split(labels, (0.8, 0.1, 0.1), seed=0)
    all_idx = np.concatenate(list(split.values()))
    assert sorted(all_idx.tolist()) == list(range(len(labels)))
    assert set(labels[split["train"]]) == set(range(5))  # every identity keeps training images
    assert np.sum(labels[split["val"]] == 0) == 2 and np.sum(labels[split["val"]] == 1) == 1
    assert np.sum(labels[split["val"]] == 4) == 0
    assert identity_split(labels, (0.8, 0.1, 0.1), seed=0)["val"].tolist() == split["val"].tolist()


def test_search_runs_reports_and_writes_top_k(synthetic_data, search_data, tmp_path):
    cfg = tiny_config(synthetic_data)
    reporter = LocalReporter(tmp_path)
    result = run_search(cfg, tmp_path, reporter=reporter, data=search_data)
    assert len(reporter.intermediates) == 2
    for m in reporter.intermediates:
        for key in ("reward", "accuracy", "latency_ms", "entropy", "child_loss", "greedy_latency_ms", "baseline"):
            assert math.isfinite(m[key]), key
        assert 0 <= m["reward"] <= math.pi / 2 and m["default"] == m["reward"]
    history = json.loads((tmp_path / "arcs_history.json").read_text())
    assert len(history) == 2 * 2 * 3
    candidates = json.loads((tmp_path / "candidates.json").read_text())
    assert len(candidates) == 4
    assert [c["val_acc"] for c in candidates] == sorted((c["val_acc"] for c in candidates), reverse=True)
    assert len(result["architectures"]) == 3 and result["default"] == candidates[0]["val_acc"]
    # typed result (facenas.nas.results): arch = the best's description, arch_path = arch.json, best first
    assert result["arch"] == result["architectures"][0]["arch"] and result["arch"]["format"] == "facenas.arch/1"
    assert result["arch_path"] == str(tmp_path / "arch.json")
    assert json.loads((tmp_path / "arch.json").read_text()) == result["arch"]
    for i, entry in enumerate(result["architectures"], 1):
        assert entry["rank"] == i and entry["sample"] == candidates[i - 1]["sample"]
        assert entry["arch_path"] == str(tmp_path / f"top{i}_arch.json")
        assert json.loads((tmp_path / f"top{i}_arch.json").read_text()) == entry["arch"]
    assert result == json.loads((tmp_path / "final.json").read_text())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["seed"] == 1 and config["data"]["identities"] == 24 and "latency_model" in config
    net = build_from_description(result["arch"])
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    # the latency the search used is the table's sum over the arc's blocks
    space = create_space("enas_test")
    table = LatencyModel.from_entries(space, flops_table(space))
    assert candidates[0]["latency_ms"] == pytest.approx(table(candidates[0]["sample"]))


def _final_state(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)


def _assert_same_search(a, b):
    """Same final supernet, head and controller weights, same arcs and same ranked candidates."""
    ca, cb = _final_state(a), _final_state(b)
    for part in ("supernet", "head"):
        assert ca[part].keys() == cb[part].keys()
        for k, v in ca[part].items():
            assert torch.equal(v, cb[part][k]), (part, k)
    for k, v in ca["controller"]["controller"].items():
        assert torch.equal(v, cb["controller"]["controller"][k]), k
    assert ca["controller"]["baseline"] == cb["controller"]["baseline"]
    for name in ("arcs_history.json", "candidates.json", "arch.json"):
        assert json.loads((a / name).read_text()) == json.loads((b / name).read_text()), name


def test_resume_matches_an_uninterrupted_search(synthetic_data, search_data, tmp_path):
    full = tiny_config(synthetic_data, candidates=3)
    run_search(full, tmp_path / "a", data=search_data)
    interrupted = tiny_config(synthetic_data, candidates=3, max_minutes=0.0)  # stops after the first child step
    stopped = run_search(interrupted, tmp_path / "b", data=search_data)
    assert stopped["stopped_early"] and stopped["global_step"] == 1 and stopped["epochs"] == 0
    state = _final_state(tmp_path / "b")
    assert state["step_in_epoch"] == 1 and state["controller"]["steps"] == 0  # no controller epoch yet
    resumed = tiny_config(synthetic_data, candidates=3, resume=True)
    final = run_search(resumed, tmp_path / "b", data=search_data)
    assert not final["stopped_early"] and final["global_step"] == 6 and final["epochs"] == 2
    _assert_same_search(tmp_path / "a", tmp_path / "b")
    epochs = [r for r in map(json.loads, (tmp_path / "b" / "train_metrics.jsonl").read_text().splitlines())
              if r["type"] == "epoch" and "reward" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    with pytest.raises(ConfigError, match=r"other settings \(seed: 1 -> 5\)"):
        run_search(tiny_config(synthetic_data, candidates=3, resume=True, seed=5), tmp_path / "b", data=search_data)


def test_a_fresh_search_refuses_a_used_folder(synthetic_data, search_data, tmp_path):
    from facenas.errors import OutputFolderError

    cfg = tiny_config(synthetic_data, candidates=3, epochs=1, steps_per_epoch=1)
    run_search(cfg, tmp_path, data=search_data)
    with pytest.raises(OutputFolderError, match="--resume"):
        run_search(cfg, tmp_path, data=search_data)
    assert not run_search(tiny_config(synthetic_data, candidates=3, epochs=1, steps_per_epoch=1, overwrite=True),
                          tmp_path, data=search_data)["stopped_early"]


def test_kill9_mid_epoch_then_resume_is_bit_for_bit(synthetic_data, tmp_path):
    """kill -9 after child step 7 (epoch 2, step 3; last checkpoint: step 6), resume: the same search."""
    from tests.kill9 import run_killed

    kill9_search(str(synthetic_data), str(tmp_path / "a"))
    run_killed(f"""
        from tests.enas.test_search import kill9_search
        kill9_search({str(synthetic_data)!r}, {str(tmp_path / 'b')!r}, kill_at=7)
    """)
    state = _final_state(tmp_path / "b")
    assert state["global_step"] == 6 and state["epoch"] == 1 and state["step_in_epoch"] == 2
    assert not (tmp_path / "b" / "final.json").exists()
    final = kill9_search(str(synthetic_data), str(tmp_path / "b"), resume=True)
    assert final["global_step"] == 8 and final["epochs"] == 2
    _assert_same_search(tmp_path / "a", tmp_path / "b")
    straight = json.loads((tmp_path / "a" / "final.json").read_text())
    for key in ("val_acc", "latency_ms", "reward"):
        assert final[key] == straight[key], key
    assert [a["arch"] for a in final["architectures"]] == [a["arch"] for a in straight["architectures"]]
    timed = ("time", "train_seconds", "controller_seconds")
    epochs = {run: [{k: v for k, v in r.items() if k not in timed}
                    for r in map(json.loads, (tmp_path / run / "train_metrics.jsonl").read_text().splitlines())
                    if r["type"] == "epoch"] for run in ("a", "b")}
    assert [(r["epoch"], r["step"]) for r in epochs["b"]] == [(1, 4), (2, 8)]  # each epoch logged once
    assert epochs["a"] == epochs["b"]  # the resumed epoch's child loss / accuracy sums came back with it


def kill9_search(rec: str, out: str, kill_at: int | None = None, resume: bool = False) -> dict:
    """The kill -9 test's search (also run in the killed child process): 2 epochs x 4 child steps."""
    import torch

    from tests.kill9 import kill9_at

    torch.set_num_threads(1)
    cfg = tiny_config(rec, candidates=3, steps_per_epoch=4, checkpoint_every=3, threads=1, resume=resume)
    return run_search(cfg, out, on_step=kill9_at(kill_at) if kill_at else None)


def test_config_errors(synthetic_data):
    with pytest.raises(ConfigError, match="latency model"):
        SearchConfig.from_dict({"reward": {"target_ms": 5.0}})
    with pytest.raises(ConfigError, match="must be <= 0"):
        SearchConfig.from_dict({"reward": {"exponent": 0.5}})
    with pytest.raises(ConfigError, match="did you mean"):
        SearchConfig.from_dict({"controller": {"lstm_sise": 4}})
    with pytest.raises(ConfigError, match="neither"):
        SearchConfig.from_dict({"rec": "/no/such/folder"}).resolved_rec()


class _Payload:
    """Pickles to a call of ``os.system`` (what a crafted checkpoint would carry)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_resume_from_a_crafted_checkpoint_runs_no_code(synthetic_data, search_data, tmp_path):
    from facenas.errors import DataFormatError

    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"format": "facenas.train/1", "x": _Payload(marker)}, out / "checkpoint.pt")
    with pytest.raises(DataFormatError, match="checkpoint.pt"):
        run_search(tiny_config(synthetic_data, candidates=3, resume=True), out, data=search_data)
    assert not marker.exists()


def test_the_refusal_of_a_crafted_checkpoint_is_one_line(tmp_path):
    from facenas.engine.checkpoint import read_model_file
    from facenas.errors import DataFormatError

    path = tmp_path / "x.pt"
    torch.save({"x": _Payload(tmp_path / "pwned")}, path)
    with pytest.raises(DataFormatError) as info:
        read_model_file(path)
    assert "\n" not in str(info.value) and "x.pt" in str(info.value)
    assert not (tmp_path / "pwned").exists()


# -- device (issue 17: the ENAS child on a GPU) -------------------------------------------------------------------
def test_device_cpu_explicit_equals_the_default(synthetic_data, search_data, tmp_path):
    assert SearchConfig().device == "cpu"
    run_search(tiny_config(synthetic_data, candidates=3, epochs=1), tmp_path / "default", data=search_data)
    run_search(tiny_config(synthetic_data, candidates=3, epochs=1, device="cpu"), tmp_path / "cpu", data=search_data)
    _assert_same_search(tmp_path / "default", tmp_path / "cpu")


def test_device_setting_errors_are_one_line(synthetic_data, search_data, tmp_path):
    with pytest.raises(ConfigError, match=r"device='gpu' is not a device; use 'cpu', 'cuda', 'cuda:N' or 'auto'") as info:
        SearchConfig.from_dict({"device": "gpu"})
    assert "\n" not in str(info.value)
    SearchConfig.from_dict({"device": "cuda:1"})  # the syntax alone: a dry run on a machine without the GPU passes
    if not torch.cuda.is_available():
        for device in ("cuda", "cuda:0"):
            with pytest.raises(ConfigError, match=rf"device='{device}' but CUDA is not available; use device='cpu'"):
                run_search(tiny_config(synthetic_data, device=device), tmp_path / device, data=search_data)
            assert not (tmp_path / device / "checkpoint.pt").exists()


class _Stop(Exception):
    pass


def _record_input_devices(module, seen):
    """A forward pre-hook that records the device of the module's input and stops the forward pass."""
    def hook(_module, args):
        seen.append(args[0].device.type)
        raise _Stop

    return module.register_forward_pre_hook(hook)


def test_child_weights_and_batches_go_to_the_device(synthetic_data, search_data, tmp_path, monkeypatch):
    """With the resolved device replaced by the meta device (tensors without data), the shared weights
    and every batch the supernet sees (child step, controller's accuracy, candidate ranking) are on it;
    the controller stays on the CPU."""
    from facenas.engine.loop import LoopState
    from facenas.plugins.enas import search as search_mod

    resolved = []
    monkeypatch.setattr(search_mod, "resolve_device", lambda name: resolved.append(name) or torch.device("meta"))
    task = search_mod.EnasSearch(tiny_config(synthetic_data, device="cuda"), tmp_path, data=search_data)
    assert resolved == ["cuda"]
    assert {p.device.type for p in task.supernet.parameters()} == {"meta"}
    assert {p.device.type for p in task.head.parameters()} == {"meta"}
    assert {p.device.type for p in task.controller.parameters()} == {"cpu"}
    seen: list[str] = []
    _record_input_devices(task.supernet, seen)
    batch = next(iter(task.batches(LoopState())))
    assert batch[0].device.type == "cpu"  # the data stays in CPU memory ...
    with pytest.raises(_Stop):
        task.step(batch, LoopState())  # ... and the step moves it
    with pytest.raises(_Stop):
        task.train_controller_epoch(1)
    with pytest.raises(_Stop):
        task.validation_accuracy(task.controller.sample())
    assert seen == ["meta", "meta", "meta"]


@pytest.mark.filterwarnings("ignore:for .* copying from a non-meta parameter")
def test_a_cpu_checkpoint_resumes_onto_the_device(synthetic_data, search_data, tmp_path, monkeypatch):
    """The loop reads checkpoints onto the CPU; the supernet, head and optimiser state end up on the device."""
    from facenas.engine.loop import LoopState
    from facenas.plugins.enas import search as search_mod

    cpu = search_mod.EnasSearch(tiny_config(synthetic_data), tmp_path / "cpu", data=search_data)
    cpu.step(next(iter(cpu.batches(LoopState()))), LoopState())  # momentum buffers exist after one step
    state = cpu.state_dict()
    monkeypatch.setattr(search_mod, "resolve_device", lambda name: torch.device("meta"))
    task = search_mod.EnasSearch(tiny_config(synthetic_data, device="cuda"), tmp_path / "dev", data=search_data)
    task.load_state_dict(state)
    buffers = [s["momentum_buffer"] for s in task.child_opt.state.values()]
    assert buffers and {b.device.type for b in buffers} == {"meta"}
    assert {p.device.type for p in task.supernet.parameters()} == {"meta"}
    assert set(task.child_opt.state) <= set(task.supernet.parameters()) | set(task.head.parameters())
