"""PartialFC: the class-centre layer plus margin softmax loss, optionally sampled and sharded.

An and Deng et al., "Killing Two Birds with One Stone: Efficient and Robust Training of Face
Recognition CNNs by Partial FC" (CVPR 2022), as in arcface_torch's ``PartialFC_V2``:

* class centres are sharded across the ranks of a process group (rank ``r`` owns a contiguous
  block of classes, the first ``num_classes % world_size`` ranks one more);
* every rank all-gathers the embeddings and labels of the global batch, computes cosines against
  its own centres and the softmax cross-entropy is computed across ranks (max, sum of
  exponentials and target probability all-reduced), so the loss and gradients equal those of one
  full FC layer on the global batch;
* with ``sample_rate < 1`` each rank keeps the centres of the classes present in the global batch
  and a random subset of the others, ``int(sample_rate * num_local)`` in total.

Unlike arcface_torch's it also runs in a single process with no process group at all (then it is
the plain full softmax head when ``sample_rate == 1``), samples negative centres from its own
seeded generator (saved in its ``state_dict`` so a resumed run samples the same centres), and
initialises the centres block-wise from ``seed`` so that the concatenated shards of any world
size equal the single-process matrix.

Gradients under DDP: the embedding all-gather's backward sums each rank's partial gradients for
the local rows and multiplies by ``world_size``, because DDP then averages the backbone's
gradients over the ranks (same convention as arcface_torch).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import distributed as dist
from torch import nn

from facenas.errors import ConfigError

log = logging.getLogger(__name__)

_INIT_BLOCK = 4096  # rows of class centres drawn from one seeded generator


def _world(process_group: Any | None) -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(process_group), dist.get_world_size(process_group)
    return 0, 1


class PartialFC(nn.Module):
    """Class centres + margin head + (distributed) softmax cross-entropy.

    Args:
        margin_loss: a margin head ``(cosines, labels) -> logits`` (see :mod:`.losses`).
        embedding_size: dimension of the backbone's embeddings.
        num_classes: total number of identities (over all ranks).
        sample_rate: fraction of each rank's centres used per step (1.0 = all).
        fp16: compute the cosine matrix under CUDA autocast (float16); ignored on CPU.
        process_group: the group the centres are sharded over (default: the world, if a process
            group is initialised; otherwise one process owns all centres).
        seed: seeds the centres' initialisation and the negative-centre sampling.
        label_smoothing: epsilon of label-smoothed cross-entropy (0 = none; OFA face uses it).
    """

    def __init__(self, margin_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], embedding_size: int,
                 num_classes: int, sample_rate: float = 1.0, fp16: bool = False, process_group: Any | None = None,
                 seed: int = 0, label_smoothing: float = 0.0):
        super().__init__()
        if not callable(margin_loss):
            raise ConfigError(f"margin_loss must be a callable head, got {type(margin_loss).__name__}")
        if num_classes < 1 or embedding_size < 1:
            raise ConfigError(f"num_classes={num_classes} and embedding_size={embedding_size} must be >= 1")
        if not 0.0 < sample_rate <= 1.0:
            raise ConfigError(f"sample_rate={sample_rate} must be in (0, 1]")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        self.process_group = process_group
        self.rank, self.world_size = _world(process_group)
        self.margin_softmax = margin_loss
        self.embedding_size = int(embedding_size)
        self.num_classes = int(num_classes)
        self.sample_rate = float(sample_rate)
        self.fp16 = bool(fp16)
        self.label_smoothing = float(label_smoothing)
        ws, r = self.world_size, self.rank
        self.num_local = num_classes // ws + int(r < num_classes % ws)
        self.class_start = num_classes // ws * r + min(r, num_classes % ws)
        self.num_sample = int(self.sample_rate * self.num_local)
        if self.num_local < 1:
            raise ConfigError(f"num_classes={num_classes} is smaller than the world size {ws}: rank {r} owns no class")
        self.weight = nn.Parameter(self._init_centres(int(seed)))
        self._sampler = torch.Generator()
        self._sampler.manual_seed(int(seed) * 1000003 + 7919 * r + 1)
        self.weight_index: torch.Tensor | None = None

    # -- initialisation and state -------------------------------------------------------------
    def _init_centres(self, seed: int) -> torch.Tensor:
        """N(0, 0.01) centres; block ``b`` of rows comes from a generator seeded ``(seed, b)``."""
        out = torch.empty(self.num_local, self.embedding_size)
        start, end = self.class_start, self.class_start + self.num_local
        g = torch.Generator()
        for block in range(start // _INIT_BLOCK, (end - 1) // _INIT_BLOCK + 1):
            lo = block * _INIT_BLOCK
            g.manual_seed(seed * 7_368_787 + block)
            rows = torch.normal(0.0, 0.01, (_INIT_BLOCK, self.embedding_size), generator=g)
            a, b = max(start, lo), min(end, lo + _INIT_BLOCK)
            out[a - start:b - start] = rows[a - lo:b - lo]
        return out

    def get_extra_state(self) -> dict[str, Any]:
        return {"sampler_state": self._sampler.get_state(), "rank": self.rank, "world_size": self.world_size,
                "class_start": self.class_start, "num_classes": self.num_classes}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("num_classes") != self.num_classes or state.get("class_start") != self.class_start:
            raise ConfigError(
                f"PartialFC state is for num_classes={state.get('num_classes')} / class_start={state.get('class_start')} "
                f"(world size {state.get('world_size')}), this head has num_classes={self.num_classes} / "
                f"class_start={self.class_start} (world size {self.world_size}); resume with the same num_classes "
                "and number of processes")
        self._sampler.set_state(state["sampler_state"])

    def extra_repr(self) -> str:
        return (f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, num_local={self.num_local}, "
                f"class_start={self.class_start}, sample_rate={self.sample_rate}, world_size={self.world_size}")

    # -- forward ------------------------------------------------------------------------------
    def sample(self, labels: torch.Tensor, index_positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres of the classes in the batch plus random others; labels remapped to columns."""
        with torch.no_grad():
            positive = torch.unique(labels[index_positive], sorted=True)
            if self.num_sample - positive.numel() >= 0:
                perm = torch.rand(self.num_local, generator=self._sampler).to(labels.device)
                perm[positive] = 2.0
                index = torch.topk(perm, k=self.num_sample)[1].sort()[0]
            else:
                index = positive
            self.weight_index = index
            labels = labels.clone()
            labels[index_positive] = torch.searchsorted(index, labels[index_positive])
        return self.weight[index], labels

    def forward(self, local_embeddings: torch.Tensor, local_labels: torch.Tensor) -> torch.Tensor:
        """Mean margin-softmax cross-entropy of the global batch (same value on every rank)."""
        local_labels = local_labels.reshape(-1).long()
        if local_embeddings.dim() != 2 or local_embeddings.size(1) != self.embedding_size:
            raise ValueError(f"embeddings of shape {tuple(local_embeddings.shape)}, expected (B, {self.embedding_size})")
        if self.world_size > 1:
            embeddings = _AllGather.apply(local_embeddings, self.process_group)
            labels = _all_gather_nograd(local_labels, self.process_group)
        else:
            embeddings, labels = local_embeddings, local_labels
        labels = labels - self.class_start
        index_positive = (labels >= 0) & (labels < self.num_local)
        labels = torch.where(index_positive, labels, torch.full_like(labels, -1))
        if self.sample_rate < 1.0:
            weight, labels = self.sample(labels, index_positive)
        else:
            weight = self.weight
        amp = torch.autocast("cuda", enabled=self.fp16) if embeddings.is_cuda else contextlib.nullcontext()
        with amp:
            logits = F.linear(F.normalize(embeddings), F.normalize(weight))
        logits = logits.float().clamp(-1.0, 1.0)
        logits = self.margin_softmax(logits, labels)
        if self.world_size > 1:
            return _DistCrossEntropy.apply(logits, labels, self.label_smoothing, self.process_group)
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)


def _all_gather_nograd(tensor: torch.Tensor, group: Any | None) -> torch.Tensor:
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, tensor.contiguous(), group=group)
    return torch.cat(parts)


class _AllGather(torch.autograd.Function):
    """All-gather of equal-sized rows whose backward returns ``world_size * sum_ranks grad[local rows]``."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any | None) -> torch.Tensor:
        ctx.group = group
        ctx.rank = dist.get_rank(group)
        ctx.world_size = dist.get_world_size(group)
        ctx.rows = tensor.size(0)
        return _all_gather_nograd(tensor, group)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        local = grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]
        return local * ctx.world_size, None


class _DistCrossEntropy(torch.autograd.Function):
    """Softmax cross-entropy over class columns sharded across ranks (labels -1: not here)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor, smoothing: float,
                group: Any | None) -> torch.Tensor:
        batch = logits.size(0)
        max_logits = logits.max(dim=1, keepdim=True)[0]
        dist.all_reduce(max_logits, op=dist.ReduceOp.MAX, group=group)
        shifted = logits - max_logits
        exp = shifted.exp()
        sum_exp = exp.sum(dim=1, keepdim=True)
        dist.all_reduce(sum_exp, op=dist.ReduceOp.SUM, group=group)
        log_sum = sum_exp.log()
        probs = exp / sum_exp
        rows = torch.where(labels != -1)[0]
        target_logp = torch.zeros(batch, 1, dtype=logits.dtype, device=logits.device)
        target_logp[rows] = shifted[rows].gather(1, labels[rows].view(-1, 1)) - log_sum[rows]
        dist.all_reduce(target_logp, op=dist.ReduceOp.SUM, group=group)
        loss = -target_logp.mean()
        num_columns = logits.size(1)
        if smoothing > 0:
            columns = torch.tensor([num_columns], dtype=torch.float64, device=logits.device)
            dist.all_reduce(columns, op=dist.ReduceOp.SUM, group=group)
            num_columns = int(columns.item())
            # sum_j log p_j = sum_j shifted_j - C * log_sum, summed over the shards
            sum_shifted = shifted.sum(dim=1, keepdim=True)
            dist.all_reduce(sum_shifted, op=dist.ReduceOp.SUM, group=group)
            mean_logp = (sum_shifted - num_columns * log_sum) / num_columns
            loss = (1.0 - smoothing) * loss - smoothing * mean_logp.mean()
        ctx.save_for_backward(probs, labels, rows)
        ctx.smoothing = smoothing
        ctx.num_columns = num_columns
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:
        probs, labels, rows = ctx.saved_tensors
        grad = probs.clone()
        target = torch.zeros_like(grad)
        target[rows, labels[rows]] = 1.0
        if ctx.smoothing > 0:
            target = (1.0 - ctx.smoothing) * target + ctx.smoothing / ctx.num_columns
        grad = (grad - target) / probs.size(0)
        return grad * grad_loss, None, None, None
