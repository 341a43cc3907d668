"""PartialFC: full softmax at sample_rate=1, sampling, seeded sharded init, and a 2-process gloo run."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from facenas.adapters.insightface import partial_fc as pfc_module
from facenas.adapters.insightface.losses import ArcFace, LiArcFace
from facenas.adapters.insightface.partial_fc import PartialFC
from facenas.errors import ConfigError


def _data(batch=8, dim=16, classes=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g), torch.randint(0, classes, (batch,), generator=g)


@pytest.mark.parametrize("head", [ArcFace(), LiArcFace()])
def test_sample_rate_one_is_the_full_softmax_head(head):
    x, y = _data()
    pfc = PartialFC(head, 16, 37, sample_rate=1.0, seed=3)
    x1 = x.clone().requires_grad_()
    loss = pfc(x1, y)
    loss.backward()
    weight = pfc.weight.detach().clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    cos = F.linear(F.normalize(x2), F.normalize(weight)).clamp(-1, 1)
    ref = F.cross_entropy(head(cos, y), y)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-6)
    assert torch.allclose(pfc.weight.grad, weight.grad, atol=1e-6)


def test_sampling_keeps_positives_and_resumes_the_same_sample():
    x, y = _data(classes=100)
    pfc = PartialFC(ArcFace(), 16, 100, sample_rate=0.3, seed=1)
    assert pfc.num_sample == 30
    pfc(x, y)
    index = pfc.weight_index
    assert index.numel() == 30 and torch.equal(index, index.sort()[0])
    assert set(y.tolist()) <= set(index.tolist())
    state = pfc.state_dict()  # includes the sampling generator's state
    twin = PartialFC(ArcFace(), 16, 100, sample_rate=0.3, seed=999)
    twin.load_state_dict(state)
    assert twin(x, y).item() == pytest.approx(pfc(x, y).item())  # same centres sampled next
    assert torch.equal(twin.weight_index, pfc.weight_index)
    assert not torch.equal(pfc.weight_index, index)  # and a new sample each step


def test_sampled_loss_equals_softmax_over_sampled_columns():
    x, y = _data(classes=100)
    pfc = PartialFC(ArcFace(), 16, 100, sample_rate=0.3, seed=1)
    loss = pfc(x, y)
    index = pfc.weight_index
    cos = F.linear(F.normalize(x), F.normalize(pfc.weight[index].detach())).clamp(-1, 1)
    remapped = torch.searchsorted(index, y)
    assert loss.item() == pytest.approx(F.cross_entropy(ArcFace()(cos, remapped), remapped).item(), rel=1e-6)


def test_sharded_init_concatenates_to_the_single_process_matrix(monkeypatch):
    full = PartialFC(ArcFace(), 8, 10_001, seed=5).weight.detach()
    for world in (2, 3):
        parts = []
        for rank in range(world):
            monkeypatch.setattr(pfc_module, "_world", lambda group, r=rank, w=world: (r, w))
            parts.append(PartialFC(ArcFace(), 8, 10_001, seed=5).weight.detach())
        assert torch.equal(torch.cat(parts), full)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="sample_rate"):
        PartialFC(ArcFace(), 8, 10, sample_rate=0.0)
    with pytest.raises(ConfigError, match="callable"):
        PartialFC("arcface", 8, 10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, sample_smoothing: float, queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x, y = _data(batch=8, classes=37)
    local = slice(rank * 4, (rank + 1) * 4)
    xl = x[local].clone().requires_grad_()
    pfc = PartialFC(ArcFace(), 16, 37, seed=3, label_smoothing=sample_smoothing)
    loss = pfc(xl, y[local])
    loss.backward()
    # DDP averages the backbone gradient over ranks; emulate that here
    grad = xl.grad.clone()
    # numpy arrays travel by value (tensors would be shared memory the exiting worker takes away)
    queue.put((rank, loss.item(), grad.numpy(), pfc.weight.grad.numpy(), pfc.class_start))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_two_process_gloo_equals_one_process(smoothing):
    x, y = _data(batch=8, classes=37)
    single = PartialFC(ArcFace(), 16, 37, seed=3, label_smoothing=smoothing)
    xs = x.clone().requires_grad_()
    loss = single(xs, y)
    loss.backward()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, smoothing, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    for rank, dist_loss, grad, wgrad, start in results:
        grad, wgrad = torch.from_numpy(grad), torch.from_numpy(wgrad)
        assert dist_loss == pytest.approx(loss.item(), rel=1e-5)
        # each rank's embedding gradient is world_size x its rows' gradient; DDP's averaging undoes the factor
        assert torch.allclose(grad / 2, xs.grad[rank * 4:(rank + 1) * 4], atol=1e-6)
        ref = single.weight.grad[start:start + wgrad.shape[0]]
        assert (wgrad - ref).abs().max() <= 1e-5 * ref.abs().max()  # float32 summation order differs
