"""The ENAS controller: an LSTM that samples architectures, trained with REINFORCE.

Zhu 2019 (Sec. 3.2) uses an LSTM with 100 hidden units whose policy is trained by policy gradient;
the mechanics follow ENAS (Pham et al. 2018, Secs. 2.2-2.4 and its public code):

* decisions are made one per LSTM step, in the order of :meth:`EnasSpace.choices` -- for each cell,
  for each node its input (``j >= 2``) and its operation, then the cell's skip connections;
* a node's input is chosen by attention over the anchors (hidden states) of the cell's earlier
  nodes, ``logit_k = v^T tanh(W_1 a_k + W_2 h)`` (ENAS micro search); the LSTM is then fed the
  chosen anchor; an operation by a softmax over ``W_soft h`` and the LSTM is fed the op's embedding;
* each skip connection is a two-way decision with logit ``v^T tanh(W_1 a_s + W_2 h)`` over the
  anchors of earlier cells (ENAS macro search); the LSTM is fed the mean of the chosen anchors;
* logits are divided by a temperature and squashed as ``tanh_constant * tanh(logits)`` (operation
  logits by ``tanh_constant / op_tanh_reduce``), which keeps the policy from collapsing early;
* :class:`ReinforceTrainer` updates the controller with REINFORCE: reward plus an entropy bonus
  (ENAS adds ``entropy_weight * entropy`` to the reward), minus an exponential moving-average
  baseline, times the arc's log-probability; Adam with ENAS's ``beta1 = 0``, ``eps = 1e-3``.

Everything random draws from the controller's own ``torch.Generator``; :meth:`ReinforceTrainer.state_dict`
holds the weights, the optimiser, the baseline and the generator, so a run resumes exactly.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facenas.config import TypedConfig
from facenas.errors import ConfigError

from .arch import input_label, op_label, skip_label

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ControllerConfig(TypedConfig):
    """Controller and REINFORCE hyper-parameters (defaults: Zhu 2019's 100 units, ENAS's others).

    Attributes:
        lstm_size: hidden units of the LSTM (100 in Zhu 2019).
        lstm_layers: stacked LSTM layers.
        temperature: logits are divided by it before the tanh squashing (None = 1).
        tanh_constant: logits become ``tanh_constant * tanh(logits)`` (None = no squashing).
        op_tanh_reduce: operation logits use ``tanh_constant / op_tanh_reduce``.
        entropy_weight: entropy bonus added to each arc's reward.
        baseline_decay: decay of the moving-average baseline (ENAS ``bl_dec``).
        advantage: ``"ema"`` (ENAS: reward minus the moving-average baseline) or ``"batch_norm"``
            (reward minus the mean of the step's arcs, divided by their standard deviation; the
            entropy bonus is then a loss term ``-entropy_weight * H``). ENAS's
            rewards are validation accuracies of 0.5-0.9 whose differences between arcs move Adam
            (``eps = 1e-3``); at CPU scale the child reaches a few percent, the differences fall
            below ``eps`` and the policy does not move. ``batch_norm`` makes the update scale-free
            and also removes the drift of the rewards as the shared weights train.
        lr: Adam learning rate.
        adam_beta1, adam_eps: Adam's first-moment decay and epsilon (ENAS: 0.0 and 1e-3).
        grad_clip: clip the controller's gradient norm (0 = off).
        init_range: weights start uniform in ``[-init_range, init_range]`` (ENAS: 0.1).
    """

    lstm_size: int = 100
    lstm_layers: int = 1
    temperature: float | None = 5.0
    tanh_constant: float | None = 1.5
    op_tanh_reduce: float = 2.5
    entropy_weight: float = 1e-4
    baseline_decay: float = 0.99
    advantage: str = "ema"
    lr: float = 0.0035
    adam_beta1: float = 0.0
    adam_eps: float = 1e-3
    grad_clip: float = 0.0
    init_range: float = 0.1

    def check(self, source: str) -> None:
        if self.lstm_size < 1 or self.lstm_layers < 1:
            raise ConfigError(f"{source}: lstm_size and lstm_layers must be >= 1 (got {self.lstm_size}, {self.lstm_layers})")
        if self.temperature is not None and self.temperature <= 0:
            raise ConfigError(f"{source}: temperature = {self.temperature} must be > 0 (or None)")
        if self.tanh_constant is not None and self.tanh_constant <= 0:
            raise ConfigError(f"{source}: tanh_constant = {self.tanh_constant} must be > 0 (or None)")
        if self.op_tanh_reduce <= 0:
            raise ConfigError(f"{source}: op_tanh_reduce = {self.op_tanh_reduce} must be > 0")
        if self.advantage not in ("ema", "batch_norm"):
            raise ConfigError(f"{source}: advantage = {self.advantage!r}; use 'ema' or 'batch_norm'")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ConfigError(f"{source}: baseline_decay = {self.baseline_decay} must be in [0, 1)")
        if self.lr <= 0 or self.entropy_weight < 0 or self.grad_clip < 0:
            raise ConfigError(f"{source}: lr must be > 0, entropy_weight and grad_clip >= 0 "
                              f"(got {self.lr}, {self.entropy_weight}, {self.grad_clip})")


@dataclasses.dataclass
class Episode:
    """One arc's log-probability and entropy (tensors, differentiable) under the controller."""

    sample: dict[str, Any]
    log_prob: torch.Tensor
    entropy: torch.Tensor


class Controller(nn.Module):
    """LSTM policy over the decisions of an :class:`~facenas.plugins.enas.space.EnasSpace`.

    Args:
        space: the ENAS space whose samples it produces.
        config: hyper-parameters.
        seed: seeds the weight initialisation and the sampling generator.
    """

    def __init__(self, space: Any, config: ControllerConfig | None = None, seed: int = 0):
        super().__init__()
        self.space = space
        self.cfg = config or ControllerConfig()
        self.cfg.validate("controller config")
        cfg, scfg = self.cfg, space.cfg
        self.ops = tuple(scfg.ops)
        h = cfg.lstm_size
        self.lstm = nn.ModuleList([nn.LSTMCell(h, h) for _ in range(cfg.lstm_layers)])
        self.g_emb = nn.Parameter(torch.empty(1, h))
        self.op_emb = nn.Embedding(len(self.ops), h)
        self.op_logits = nn.Linear(h, len(self.ops))
        self.node_attn_1 = nn.Linear(h, h, bias=False)
        self.node_attn_2 = nn.Linear(h, h, bias=False)
        self.node_attn_v = nn.Linear(h, 1, bias=False)
        self.skip_attn_1 = nn.Linear(h, h, bias=False)
        self.skip_attn_2 = nn.Linear(h, h, bias=False)
        self.skip_attn_v = nn.Linear(h, 1, bias=False)
        init = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.rand(p.shape, generator=init) * 2 * cfg.init_range - cfg.init_range)
        self.generator = torch.Generator().manual_seed(seed + 1)

    # -- the policy -------------------------------------------------------------------------------
    def _squash(self, logits: torch.Tensor, tanh_constant: float | None) -> torch.Tensor:
        if self.cfg.temperature is not None:
            logits = logits / self.cfg.temperature
        if tanh_constant is not None:
            logits = tanh_constant * torch.tanh(logits)
        return logits

    def _step(self, x: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]]):
        new_state = []
        for layer, (h, c) in zip(self.lstm, state):
            h, c = layer(x, (h, c))
            new_state.append((h, c))
            x = h
        return x, new_state

    def _decide(self, logits: torch.Tensor, forced: int | None, rec: dict[str, Any]) -> int:
        """Sample (or take ``forced``, or the argmax when greedy) from ``logits``; accumulate
        log-prob and entropy into ``rec``."""
        log_p = F.log_softmax(logits, dim=-1)
        if forced is not None:
            index = int(forced)
        elif rec["greedy"]:
            index = int(torch.argmax(log_p.detach()))
        else:
            index = int(torch.multinomial(log_p.detach().exp(), 1, generator=self.generator).item())
        rec["log_prob"] = rec["log_prob"] + log_p[index]
        rec["entropy"] = rec["entropy"] - (log_p.exp() * log_p).sum()
        return index

    def _run(self, forced: Mapping[str, Any] | None, greedy: bool = False) -> Episode:
        scfg, cfg = self.space.cfg, self.cfg
        op_tanh = None if cfg.tanh_constant is None else cfg.tanh_constant / cfg.op_tanh_reduce
        zeros = torch.zeros(1, cfg.lstm_size)
        state = [(zeros, zeros) for _ in self.lstm]
        rec: dict[str, Any] = {"log_prob": torch.zeros(()), "entropy": torch.zeros(()), "greedy": greedy}
        sample: dict[str, Any] = {}
        inputs = self.g_emb
        h, state = self._step(inputs, state)  # the stem's anchor
        cell_anchors = [h]
        cell_keys = [self.skip_attn_1(h)]
        for c in range(1, scfg.num_cells + 1):
            h, state = self._step(self.g_emb, state)  # node 0 (the cell input)'s anchor
            anchors, keys = [h], [self.node_attn_1(h)]
            inputs = self.g_emb
            for j in range(1, scfg.num_nodes + 1):
                if j >= 2:
                    label = input_label(c, j)
                    h, state = self._step(inputs, state)
                    query = torch.tanh(torch.cat(keys, 0) + self.node_attn_2(h))
                    logits = self._squash(self.node_attn_v(query).view(-1), cfg.tanh_constant)
                    idx = self._decide(logits, None if forced is None else forced[label], rec)
                    sample[label] = idx
                    inputs = anchors[idx]
                label = op_label(c, j)
                h, state = self._step(inputs, state)
                logits = self._squash(self.op_logits(h).view(-1), op_tanh)
                op = self._decide(logits, None if forced is None else self.ops.index(forced[label]), rec)
                sample[label] = self.ops[op]
                inputs = self.op_emb.weight[op].view(1, -1)
                h, state = self._step(inputs, state)  # node j's anchor
                anchors.append(h)
                keys.append(self.node_attn_1(h))
                inputs = self.g_emb
            sources = scfg.skip_sources(c)
            if sources:
                h, state = self._step(inputs, state)
                query = torch.tanh(torch.cat([cell_keys[s] for s in sources], 0) + self.skip_attn_2(h))
                logit = self.skip_attn_v(query).view(-1)
                chosen = []
                for s, lg in zip(sources, logit):
                    label = skip_label(c, s)
                    two_way = self._squash(torch.stack([-lg, lg]), cfg.tanh_constant)
                    on = self._decide(two_way, None if forced is None else forced[label], rec)
                    sample[label] = on
                    if on:
                        chosen.append(cell_anchors[s])
                inputs = (torch.cat(chosen, 0).sum(0, keepdim=True) if chosen else zeros) / (1 + len(chosen))
            h, state = self._step(inputs, state)  # the cell's anchor for later skips
            cell_anchors.append(h)
            cell_keys.append(self.skip_attn_1(h))
        return Episode(sample, rec["log_prob"], rec["entropy"])

    # -- public API -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self) -> dict[str, Any]:
        """A new architecture drawn from the policy (with the controller's own generator)."""
        out = self._run(None).sample
        return {label: out[label] for label in self.space.labels()}

    def evaluate(self, sample: Mapping[str, Any]) -> Episode:
        """Differentiable log-probability and entropy of the policy's decisions for ``sample``."""
        return self._run(self.space.validate(sample))

    def log_prob(self, sample: Mapping[str, Any]) -> float:
        with torch.no_grad():
            return float(self.evaluate(sample).log_prob)

    @torch.no_grad()
    def greedy(self) -> dict[str, Any]:
        """The arc of highest probability decision by decision (argmax at each step)."""
        out = self._run(None, greedy=True).sample
        return {label: out[label] for label in self.space.labels()}

    def generator_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_generator_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


class ReinforceTrainer:
    """REINFORCE with a moving-average baseline and an entropy bonus (ENAS Sec. 2.2).

    For a batch of arcs ``a_i`` with rewards ``R_i``: ``r_i = R_i + entropy_weight * H(a_i)``,
    advantage ``r_i - b`` against the baseline ``b`` of the previous batches, loss
    ``-mean_i (r_i - b) log p(a_i)`` (or with the batch-normalised advantage, see
    ``ControllerConfig.advantage``); then ``b <- decay * b + (1 - decay) * r_i`` for each arc in
    turn (the average moves once per arc, as in ENAS). The baseline starts at the first batch's
    mean reward (ENAS starts it at 0, which makes the first arcs look good however bad they are).
    """

    def __init__(self, controller: Controller):
        self.controller = controller
        cfg = controller.cfg
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, 0.999),
                                          eps=cfg.adam_eps)
        self.baseline: float | None = None
        self.steps = 0

    def update(self, samples: Sequence[Mapping[str, Any]], rewards: Sequence[float]) -> dict[str, float]:
        """One policy-gradient step on ``samples`` with their ``rewards``; returns the step's stats."""
        if len(samples) != len(rewards) or not samples:
            raise ValueError(f"need as many rewards as samples (got {len(samples)} samples, {len(rewards)} rewards)")
        for r in rewards:
            if not math.isfinite(float(r)):
                raise ValueError(f"reward {r} is not a finite number; rewards: {list(rewards)}")
        cfg = self.controller.cfg
        episodes = [self.controller.evaluate(s) for s in samples]
        shaped = [float(r) + cfg.entropy_weight * float(e.entropy.detach()) for r, e in zip(rewards, episodes)]
        mean_r = sum(shaped) / len(shaped)
        baseline = mean_r if self.baseline is None else self.baseline
        if cfg.advantage == "batch_norm":
            # normalise the task reward alone; the entropy bonus becomes a loss term (it would otherwise be
            # amplified by the normalisation whenever the rewards are nearly equal)
            raw = [float(r) for r in rewards]
            mean_raw = sum(raw) / len(raw)
            std = math.sqrt(sum((r - mean_raw) ** 2 for r in raw) / len(raw))
            advantages = [(r - mean_raw) / std if std > 1e-12 else 0.0 for r in raw]
            loss = -sum(a * e.log_prob + cfg.entropy_weight * e.entropy for a, e in zip(advantages, episodes)) / len(episodes)
        else:
            loss = -sum((r - baseline) * e.log_prob for r, e in zip(shaped, episodes)) / len(episodes)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.controller.parameters(), cfg.grad_clip)
        self.optimizer.step()
        # the moving average advances once per arc, as ENAS's (which updates it for every sampled arc)
        for r in shaped:
            baseline = cfg.baseline_decay * baseline + (1.0 - cfg.baseline_decay) * r
        self.baseline = baseline
        self.steps += 1
        return {"controller_loss": float(loss.detach()), "baseline": self.baseline,
                "entropy": sum(float(e.entropy.detach()) for e in episodes) / len(episodes),
                "log_prob": sum(float(e.log_prob.detach()) for e in episodes) / len(episodes),
                "reward": sum(float(r) for r in rewards) / len(rewards)}

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline, "steps": self.steps, "generator": self.controller.generator_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.steps = int(state["steps"])
        self.controller.set_generator_state(state["generator"])
