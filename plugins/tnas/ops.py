"""The differentiable pieces of TNAS (Wang, AAAI 2021, "Teacher Guided Neural Architecture Search").

* :func:`channel_wise_interpolation` -- CWI (Dong & Yang 2019, used by TNAS Eq. 6): align a
  feature map of ``C`` channels to ``C'`` channels by adaptive average pooling over channels
  (a 3D adaptive average pooling of ``(B, 1, C, H, W)`` to ``(B, 1, C', H, W)``).
* :func:`gumbel_select` -- Eq. 5 (Gumbel-softmax over the candidates' log-probabilities) and the
  sampled subset ``I`` with re-normalised weights of Eq. 6.
* :func:`weighted_mixture` -- Eq. 6: ``sum_{j in I} w_j * CWI(O[:, :C_j], max(C_I))``.
* :func:`cost_loss` -- Eq. 11, the piecewise cost loss on the expected cost ``E_cost(A)`` whose
  regime is decided by the cost ``F_cost(A)`` of the argmax architecture and a tolerance ``t``.
* :func:`categorical_entropy` -- the entropy of a choice's distribution (search progress).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
import torch.nn.functional as F

#: the regimes of Eq. 11
COST_ABOVE, COST_WITHIN, COST_BELOW = "above", "within", "below"
#: forms of the loss below the band: Eq. 11's ``1/log(E)``, or TAS's ``-log(E)`` (Dong & Yang 2019)
BELOW_FORMS = ("inv_log", "neg_log")


def channel_wise_interpolation(x: torch.Tensor, channels: int) -> torch.Tensor:
    """CWI: resize ``x`` (B, C, H, W) to ``channels`` channels by adaptive average pooling over C.

    Output channel ``i`` is the mean of input channels ``floor(i*C/C')`` .. ``ceil((i+1)*C/C') - 1``
    (PyTorch's adaptive pooling windows), so growing 2 -> 3 channels gives ``[x0, (x0+x1)/2, x1]``.
    Spatial size is unchanged; ``channels == C`` returns ``x`` itself.
    """
    if x.dim() != 4:
        raise ValueError(f"CWI expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if channels < 1:
        raise ValueError(f"CWI target channels must be >= 1, got {channels}")
    if x.shape[1] == channels:
        return x
    h, w = x.shape[-2:]
    return F.adaptive_avg_pool3d(x.unsqueeze(1), (channels, h, w)).squeeze(1)


@dataclasses.dataclass
class Selection:
    """The candidates one choice uses in one forward pass and their weights.

    Attributes:
        indices: candidate indices ``I`` (into the choice's candidate list).
        values: the candidates' sizes (channel counts, or block counts for a depth).
        weights: ``(len(I),)`` tensor of re-normalised weights (sum 1; differentiable w.r.t. the
            logits in an architecture step).
    """

    indices: list[int]
    values: list[int]
    weights: torch.Tensor

    @property
    def max_value(self) -> int:
        return max(self.values)

    @classmethod
    def fixed(cls, index: int, value: int) -> "Selection":
        """A single candidate with weight 1 (a derived architecture run through the supernet)."""
        return cls([int(index)], [int(value)], torch.ones(1))


def gumbel_noise(shape: Sequence[int] | torch.Size, generator: torch.Generator | None = None,
                 eps: float = 1e-10) -> torch.Tensor:
    """Standard Gumbel samples ``o = -log(-log(u))``, ``u ~ U(0, 1)`` (Eq. 5), from ``generator``."""
    u = torch.rand(tuple(shape), generator=generator).clamp_(eps, 1.0 - eps)
    return -torch.log(-torch.log(u))


def gumbel_softmax_probs(logits: torch.Tensor, tau: float, noise: torch.Tensor) -> torch.Tensor:
    """Eq. 5: ``p_hat_j = softmax((log p_j + o_j) / tau)`` with ``p = softmax(logits)`` (Eq. 4)."""
    if tau <= 0:
        raise ValueError(f"Gumbel-softmax temperature must be > 0, got {tau}")
    return F.softmax((F.log_softmax(logits, dim=-1) + noise.to(logits)) / tau, dim=-1)


def gumbel_select(logits: torch.Tensor, values: Sequence[int], tau: float, num: int = 2,
                  generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> Selection:
    """Sample ``|I| = num`` candidates from ``p_hat`` (Eq. 5) and re-normalise their weights (Eq. 6).

    ``I`` is drawn without replacement from the multinomial distribution ``T_p_hat``; the weight
    of ``j in I`` is ``exp((log p_j + o_j)/tau) / sum_{k in I} exp((log p_k + o_k)/tau)``, which is
    differentiable w.r.t. ``logits`` (the sampling of ``I`` itself is not).

    Args:
        logits: the choice's architecture parameters (alpha or beta), shape ``(|C|,)``.
        values: the candidates' sizes, ``len(values) == |C|``.
        tau: temperature.
        num: ``|I|`` (clipped to ``|C|``).
        generator: torch generator for the noise and the multinomial draw.
        noise: explicit Gumbel noise ``o`` (tests); drawn from ``generator`` when None.
    """
    if logits.dim() != 1 or logits.numel() != len(values):
        raise ValueError(f"logits of shape {tuple(logits.shape)} do not match {len(values)} candidates")
    if noise is None:
        noise = gumbel_noise(logits.shape, generator)
    z = (F.log_softmax(logits, dim=-1) + noise.to(logits)) / tau
    k = max(1, min(int(num), logits.numel()))
    with torch.no_grad():
        probs = F.softmax(z.detach().float().cpu(), dim=-1)
        probs = torch.nan_to_num(probs, nan=0.0) + 1e-12
        idx = torch.multinomial(probs, k, replacement=False, generator=generator).tolist()
    idx = sorted(idx, key=lambda i: values[i])
    weights = F.softmax(z[idx], dim=-1)
    return Selection(idx, [int(values[i]) for i in idx], weights)


def weighted_mixture(x: torch.Tensor, selection: Selection) -> torch.Tensor:
    """Eq. 6: ``sum_{j in I} w_j * CWI(x[:, :C_j], max(C_I))`` for ``x`` with ``max(C_I)`` channels.

    ``x`` is the (batch-normalised) output of a convolution computed at the widest selected width;
    each candidate keeps its first ``C_j`` channels, CWI aligns it back to ``max(C_I)`` channels
    and the aligned fragments are summed with the selection's weights.
    """
    cmax = selection.max_value
    if x.shape[1] != cmax:
        raise ValueError(f"mixture input has {x.shape[1]} channels, expected max(C_I) = {cmax}")
    if len(selection.values) == 1:
        w = selection.weights[0]
        return x if not w.requires_grad and float(w) == 1.0 else x * w.to(x)
    out = None
    for c, w in zip(selection.values, selection.weights.to(x)):
        part = channel_wise_interpolation(x[:, :c], cmax) * w
        out = part if out is None else out + part
    return out


def depth_mixture(outputs: Sequence[torch.Tensor], selection: Selection) -> torch.Tensor:
    """Eq. 7 within a stage: ``sum_{l in I} q_l * O_l`` over the outputs after the selected depths.

    ``outputs[l]`` is the stage's feature map after ``selection.values[l]`` blocks. The stage's
    residual width is one tied choice, so all outputs share their channel count and the CWI of
    Eq. 7 is the identity here (it is applied anyway when widths differ).
    """
    cmax = max(o.shape[1] for o in outputs)
    out = None
    for o, w in zip(outputs, selection.weights.to(outputs[0])):
        part = channel_wise_interpolation(o, cmax) * w
        out = part if out is None else out + part
    return out


def cost_regime(actual: float, target: float, tolerance: float) -> str:
    """Which case of Eq. 11 applies: ``above`` if ``F >= (1+t)R``, ``below`` if ``F <= (1-t)R``."""
    if actual >= (1.0 + tolerance) * target:
        return COST_ABOVE
    if actual <= (1.0 - tolerance) * target:
        return COST_BELOW
    return COST_WITHIN


def cost_loss(expected: torch.Tensor, actual: float, target: float, tolerance: float = 0.05,
              below: str = "inv_log") -> tuple[torch.Tensor, str]:
    """Eq. 11: ``log E`` above the band, 0 inside it, ``1/log E`` below it; returns (loss, regime).

    Args:
        expected: ``E_cost(A)``, the differentiable expected cost (MACs, so ``log E > 0``).
        actual: ``F_cost(A)``, the cost of the argmax architecture (same unit).
        target: ``R``.
        tolerance: ``t`` in [0, 1).
        below: ``"inv_log"`` (Eq. 11 as printed) or ``"neg_log"`` (TAS's ``-log E``, whose
            gradient is ``log(E)^2`` times stronger).
    """
    if not 0 <= tolerance < 1:
        raise ValueError(f"cost tolerance must be in [0, 1), got {tolerance}")
    if target <= 0:
        raise ValueError(f"cost target must be > 0, got {target}")
    if below not in BELOW_FORMS:
        raise ValueError(f"cost loss form below the band must be one of {BELOW_FORMS}, got {below!r}")
    regime = cost_regime(actual, target, tolerance)
    if regime == COST_ABOVE:
        return torch.log(expected), regime
    if regime == COST_BELOW:
        log_e = torch.log(expected)
        if below == "neg_log":
            return -log_e, regime
        if float(log_e.detach()) <= 0:
            raise ValueError(f"Eq. 11's 1/log(E) needs E > 1 (got E = {float(expected.detach())}); express the cost in MACs")
        return 1.0 / log_e, regime
    return expected.new_zeros(()) * expected, regime  # keeps the graph (zero gradient)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)``."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def linear_temperature(step: int, total_steps: int, tau_max: float = 10.0, tau_min: float = 0.1) -> float:
    """The temperature decayed linearly from ``tau_max`` (step 0) to ``tau_min`` (last step)."""
    if total_steps <= 1:
        return float(tau_min)
    frac = min(max(step / (total_steps - 1), 0.0), 1.0)
    return float(tau_max - (tau_max - tau_min) * frac)


def cosine_lr(step: int, total_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Cosine annealing (Loshchilov & Hutter 2016) from ``base_lr`` to ``min_lr`` over ``total_steps``."""
    if total_steps <= 0:
        return float(base_lr)
    frac = min(max(step / total_steps, 0.0), 1.0)
    return float(min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * frac)))
