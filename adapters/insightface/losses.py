"""Margin heads: turn clamped cosines ``cos(theta_j)`` into scaled logits for softmax cross-entropy.

The interface is arcface_torch's: a head is a module ``head(logits, labels) -> logits`` where
``logits`` (B, C) are cosines between normalised embeddings and normalised class centres,
clamped to [-1, 1], and ``labels`` (B,) or (B, 1) hold each row's target column, or ``-1`` when
the row's class is not among these columns (another rank's shard under PartialFC). The head
returns ``s * f(...)`` ready for cross-entropy; it never modifies its input in place.

Heads (``HEADS`` registry):

* ``combined`` -- :class:`CombinedMarginLoss` ``(s, m1, m2, m3)``, target logit
  ``s * (cos(m1 * theta + m2) - m3)`` (ArcFace paper, Sec. 2.3 "combined margin"), with
  arcface_torch's ``margin_list`` convention: ArcFace ``(1.0, 0.5, 0.0)``, CosFace
  ``(1.0, 0.0, 0.4)``, normalised softmax ``(1.0, 0.0, 0.0)``.
* ``arcface`` (additive angular margin, ArcFace Eq. 3), ``cosface`` (additive cosine margin,
  CosFace Eq. 4), ``softmax`` (N-Softmax, AirFace Eq. 3): the same family with one margin.
* ``li_arcface`` -- :class:`LiArcFace` (AirFace, Sec. 3.1, Eq. 5): logits are a *linear*
  function of the angle, target ``s * (pi - 2 (theta + m)) / pi`` and non-targets
  ``s * (pi - 2 theta) / pi``.

Gradient modes of the angular margin (``grad_mode``):

* ``"arcface_torch"`` -- arcface_torch applies the ArcFace margin under ``torch.no_grad()``:
  the forward value is ``s * cos(theta + m)`` but the backward pass sees ``s * cos(theta)``
  (straight-through: d logit / d cos = s for every entry). This is the **default of the
  cosine-family heads** (``combined``, ``arcface``, ``softmax``, ``cosface``), so numbers
  match arcface_torch.
* ``"textbook"`` -- autograd through ``arccos`` and the margin function, i.e. the gradient of
  the formula as written in the papers: d/d cos of ``s cos(theta + m)`` is
  ``s sin(theta + m) / sin(theta)``. This is the **default of** ``li_arcface``: the AirFace
  paper's argument for Li-ArcFace is the shape of this gradient (constant in the angle).
  ``arccos`` has an infinite slope at +-1, so the textbook mode clamps cosines to
  ``[-1 + eps, 1 - eps]`` (``eps = 1e-6``) before ``arccos``.

CosFace's margin is additive in the cosine, so both modes give the same gradient for it.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from facenas.errors import ConfigError
from facenas.registry import Registry

#: Margin heads by name; ``HEADS.create(name, **kwargs)`` builds one.
HEADS: Registry = Registry("margin head")

GRAD_MODES = ("arcface_torch", "textbook")
_EPS = 1e-6


def _check_grad_mode(grad_mode: str) -> str:
    if grad_mode not in GRAD_MODES:
        raise ConfigError(f"grad_mode={grad_mode!r} is not one of {list(GRAD_MODES)}")
    return grad_mode


def _target_index(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose target column is present (label != -1) and those columns."""
    labels = labels.reshape(-1)
    if labels.numel() != logits.size(0):
        raise ValueError(f"labels has {labels.numel()} entries for {logits.size(0)} rows of logits")
    rows = torch.where(labels != -1)[0]
    return rows, labels[rows].long()


def _replace_targets(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                     new_target: torch.Tensor, straight_through: bool) -> torch.Tensor:
    """``logits`` with ``logits[rows, cols]`` set to ``new_target`` (out of place).

    With ``straight_through`` the forward value is ``new_target`` but the gradient flows to the
    old target value as if unchanged (arcface_torch's ``no_grad`` margin).
    """
    old = logits[rows, cols]
    if straight_through:
        new_target = old + (new_target - old).detach()
    return logits.index_put((rows, cols), new_target)


class MarginHead(nn.Module):
    """Base class: ``forward(cosines, labels) -> scaled logits``; subclasses set :attr:`s`."""

    s: float

    def extra_repr(self) -> str:
        fields = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "training"}
        return ", ".join(f"{k}={v}" for k, v in fields.items())


class CombinedMarginLoss(MarginHead):
    """arcface_torch's margin head: target logit ``s * (cos(m1 theta + m2) - m3)``.

    Args:
        s: feature scale (arcface_torch uses 64).
        m1: multiplicative angular margin (SphereFace); 1.0 disables it.
        m2: additive angular margin (ArcFace); 0.0 disables it.
        m3: additive cosine margin (CosFace); 0.0 disables it.
        interclass_filtering_threshold: if > 0, non-target cosines above it are set to 0 for
            rows with a present target, and every cosine above it for rows without one
            (arcface_torch's inter-class filtering of noisy WebFace42M labels).
        grad_mode: ``"arcface_torch"`` (default, margin applied without gradient) or
            ``"textbook"``; see the module docstring.

    For the combinations arcface_torch implements -- ``m1 == 1, m3 == 0`` (ArcFace / N-Softmax)
    and ``m1 == 1, m2 == 0, m3 > 0`` (CosFace) -- the forward values equal arcface_torch's.
    arcface_torch rejects ``m1 != 1`` with ``m3 == 0`` and silently drops ``m1, m2`` when
    ``m3 > 0``; here every combination follows the formula above.
    """

    def __init__(self, s: float, m1: float, m2: float, m3: float,
                 interclass_filtering_threshold: float = 0.0, grad_mode: str = "arcface_torch"):
        super().__init__()
        if s <= 0:
            raise ConfigError(f"margin scale s={s} must be > 0 (arcface_torch uses 64)")
        if m1 <= 0:
            raise ConfigError(f"margin m1={m1} must be > 0 (1.0 disables the multiplicative margin)")
        if m2 < 0 or m3 < 0:
            raise ConfigError(f"margins m2={m2}, m3={m3} must be >= 0")
        self.s = float(s)
        self.m1 = float(m1)
        self.m2 = float(m2)
        self.m3 = float(m3)
        self.interclass_filtering_threshold = float(interclass_filtering_threshold)
        self.grad_mode = _check_grad_mode(grad_mode)

    def _filter(self, logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            dirty = logits > self.interclass_filtering_threshold
            keep_target = torch.zeros_like(dirty)
            keep_target[rows, cols] = True
            keep = ~(dirty & ~keep_target)
        return logits * keep.to(logits.dtype)

    def target_logit(self, cos_target: torch.Tensor) -> torch.Tensor:
        """The unscaled target value ``cos(m1 theta + m2) - m3`` for target cosines."""
        if self.m1 == 1.0 and self.m2 == 0.0:
            return cos_target - self.m3
        theta = torch.arccos(cos_target.clamp(-1.0 + _EPS, 1.0 - _EPS))
        return torch.cos(self.m1 * theta + self.m2) - self.m3

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows, cols = _target_index(logits, labels)
        if self.interclass_filtering_threshold > 0:
            logits = self._filter(logits, rows, cols)
        if self.m1 != 1.0 or self.m2 != 0.0 or self.m3 != 0.0:
            target = logits[rows, cols]
            angular = self.m1 != 1.0 or self.m2 != 0.0
            straight_through = angular and self.grad_mode == "arcface_torch"
            logits = _replace_targets(logits, rows, cols, self.target_logit(target), straight_through)
        return logits * self.s


class LiArcFace(MarginHead):
    """Li-ArcFace (AirFace, Sec. 3.1, Eq. 5): logits linear in the angle.

    ``theta_j = arccos(cos_j)``; non-target logit ``s (pi - 2 theta_j) / pi``, target logit
    ``s (pi - 2 (theta_y + m)) / pi``. Monotonic in the angle on ``[0, pi + m]``, so training
    a 128-d MobileFaceNet from scratch converges where ArcFace may diverge (AirFace Sec. 4.1).

    Args:
        s: feature scale (AirFace uses 64).
        m: additive angular margin (AirFace finds 0.4-0.45 best).
        grad_mode: ``"textbook"`` (default) or ``"arcface_torch"`` (straight-through margin).
    """

    def __init__(self, s: float = 64.0, m: float = 0.45, grad_mode: str = "textbook"):
        super().__init__()
        if s <= 0:
            raise ConfigError(f"margin scale s={s} must be > 0")
        if m < 0:
            raise ConfigError(f"Li-ArcFace margin m={m} must be >= 0")
        self.s = float(s)
        self.m = float(m)
        self.grad_mode = _check_grad_mode(grad_mode)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows, cols = _target_index(logits, labels)
        if self.grad_mode == "textbook":
            theta = torch.arccos(logits.clamp(-1.0 + _EPS, 1.0 - _EPS))
            theta = theta.index_put((rows, cols), theta[rows, cols] + self.m)
            return self.s * (math.pi - 2.0 * theta) / math.pi
        # straight-through: forward values of Li-ArcFace, gradient of s * cos
        with torch.no_grad():
            theta = torch.arccos(logits.clamp(-1.0, 1.0))
            theta[rows, cols] += self.m
            values = (math.pi - 2.0 * theta) / math.pi
        return self.s * (logits + (values - logits).detach())


@HEADS.register("combined")
def combined(s: float = 64.0, margin_list: tuple[float, float, float] = (1.0, 0.5, 0.0),
             interclass_filtering_threshold: float = 0.0, grad_mode: str = "arcface_torch") -> CombinedMarginLoss:
    """arcface_torch's head from its config fields (``margin_list`` = ``(m1, m2, m3)``)."""
    m1, m2, m3 = _margin_triple(margin_list)
    return CombinedMarginLoss(s, m1, m2, m3, interclass_filtering_threshold, grad_mode)


@HEADS.register("arcface")
def ArcFace(s: float = 64.0, margin: float = 0.5, grad_mode: str = "arcface_torch",
            interclass_filtering_threshold: float = 0.0) -> CombinedMarginLoss:
    """ArcFace (Deng et al. 2019, Eq. 3): target ``s cos(theta + margin)``."""
    return CombinedMarginLoss(s, 1.0, margin, 0.0, interclass_filtering_threshold, grad_mode)


@HEADS.register("cosface")
def CosFace(s: float = 64.0, margin: float = 0.4, grad_mode: str = "arcface_torch",
            interclass_filtering_threshold: float = 0.0) -> CombinedMarginLoss:
    """CosFace / AM-Softmax (Wang et al. 2018, Eq. 4): target ``s (cos theta - margin)``."""
    return CombinedMarginLoss(s, 1.0, 0.0, margin, interclass_filtering_threshold, grad_mode)


@HEADS.register("softmax")
def NormSoftmax(s: float = 64.0, grad_mode: str = "arcface_torch",
                interclass_filtering_threshold: float = 0.0) -> CombinedMarginLoss:
    """Normalised softmax (NormFace; AirFace's "N-Softmax", Eq. 3): logits ``s cos theta``."""
    return CombinedMarginLoss(s, 1.0, 0.0, 0.0, interclass_filtering_threshold, grad_mode)


@HEADS.register("li_arcface")
def li_arcface(s: float = 64.0, margin: float = 0.45, grad_mode: str = "textbook") -> LiArcFace:
    """Li-ArcFace (AirFace Eq. 5)."""
    return LiArcFace(s, margin, grad_mode)


def _margin_triple(margin_list: Any) -> tuple[float, float, float]:
    try:
        m1, m2, m3 = (float(v) for v in margin_list)
    except (TypeError, ValueError):
        raise ConfigError(f"margin_list={margin_list!r} must be three numbers (m1, m2, m3), "
                          "e.g. (1.0, 0.5, 0.0) for ArcFace or (1.0, 0.0, 0.4) for CosFace") from None
    return m1, m2, m3


def build_margin_head(name: str = "combined", margin_list: Any = (1.0, 0.5, 0.0), s: float = 64.0,
                      interclass_filtering_threshold: float = 0.0, grad_mode: str | None = None) -> MarginHead:
    """A head from arcface_torch-style config fields.

    ``margin_list = (m1, m2, m3)`` is read by every head: ``combined`` uses all three;
    ``arcface`` and ``li_arcface`` use ``m2`` (the additive angular margin) and need ``m1 = 1,
    m3 = 0``; ``cosface`` uses ``m3`` and needs ``m1 = 1, m2 = 0``; ``softmax`` needs
    ``(1, 0, 0)``. ``grad_mode=None`` keeps the head's default.
    """
    m1, m2, m3 = _margin_triple(margin_list)
    kwargs: dict[str, Any] = {"s": s}
    if grad_mode is not None:
        kwargs["grad_mode"] = grad_mode
    needs = {
        "arcface": ((m1, m3), (1.0, 0.0), "(1.0, m, 0.0)"),
        "li_arcface": ((m1, m3), (1.0, 0.0), "(1.0, m, 0.0)"),
        "cosface": ((m1, m2), (1.0, 0.0), "(1.0, 0.0, m)"),
        "softmax": ((m1, m2, m3), (1.0, 0.0, 0.0), "(1.0, 0.0, 0.0)"),
    }
    if name in needs:
        got, want, form = needs[name]
        if tuple(got) != want:
            raise ConfigError(f"margin head '{name}' takes margin_list of the form {form}, got {tuple(margin_list)}")
    if name == "combined":
        return HEADS.create(name, margin_list=(m1, m2, m3),
                            interclass_filtering_threshold=interclass_filtering_threshold, **kwargs)
    if interclass_filtering_threshold and name == "li_arcface":
        raise ConfigError("interclass_filtering_threshold is only implemented for the cosine heads, not li_arcface")
    if name in ("arcface", "li_arcface"):
        kwargs["margin"] = m2
    elif name == "cosface":
        kwargs["margin"] = m3
    if name != "li_arcface" and name in HEADS:
        kwargs["interclass_filtering_threshold"] = interclass_filtering_threshold
    return HEADS.create(name, **kwargs)
