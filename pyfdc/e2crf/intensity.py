"""The E2-CRF event intensity (Eq. 12, Δ = 1) and the Eq. 14 step size, per sample
(used by :class:`pyfdc.e2crf.policy.E2CRFPolicy`)."""
from __future__ import annotations

import torch
from torch import Tensor


def eq14_step_size(r: Tensor, tau_safe: float, alpha_max: float, out: Tensor | None = None) -> Tensor:
    """Eq. 14 for ``r (B,)``: ``α_b = min(α_max, r_b / 2)`` where ``r_b ≥ τ_safe``, else 0 (the safe zone)."""
    return torch.where(r >= tau_safe, torch.clamp(r * 0.5, max=alpha_max), torch.zeros_like(r), out=out)


def fold_features(r: Tensor, prev: Tensor, prev_sq: Tensor, feat: Tensor, probe_err: Tensor | None,
                  eta: float, have_prev: bool) -> Tensor:
    """Eq. 12 in place: ``r (B,)`` from this step's features ``feat (B, N', d)`` against ``prev``
    (``prev_sq (B,)`` its squared norms; skipped unless ``have_prev``) and the probe error ``(B,)``; then
    ``feat`` becomes ``prev``. Tensors only, so a compiled step can run it (:meth:`CachedStep.policy_sparse`)."""
    if have_prev:
        torch.div((feat - prev).pow(2).sum(dim=(1, 2)), prev_sq + eta, out=r)
    if probe_err is not None:
        torch.maximum(r, probe_err, out=r)
    prev.copy_(feat)
    torch.sum(feat.pow(2), dim=(1, 2), out=prev_sq)
    return r


class EventIntensity:
    """``r_b = max(‖F(i−1) − F(i−2)‖² / (‖F(i−2)‖² + η), e_b(i−1))`` over final-layer features
    ``F (B, N', d)`` and the previous relative probe error ``e_b``; 0 until two steps have been seen.

    Buffers (allocated once): ``r (B,)``, ``alpha (B,)``, ``prev (B, N', d)``, ``prev_sq (B,)``.
    """

    def __init__(self, batch: int, num_tokens: int, width: int, eta: float, *, dtype: torch.dtype,
                 device: torch.device | str) -> None:
        kw = {"dtype": dtype, "device": device}
        self.eta = eta
        self.r, self.alpha, self.prev_sq = (torch.zeros(batch, **kw) for _ in range(3))
        self.prev = torch.zeros(batch, num_tokens, width, **kw)
        self.seen = 0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.r, self.alpha, self.prev, self.prev_sq))

    def current(self) -> Tensor:
        """``r (B,)`` for the step about to run (zeroed while fewer than two steps have been seen)."""
        if self.seen < 2:
            self.r.zero_()
        return self.r

    def step_size(self, tau_safe: float, alpha_max: float) -> Tensor:
        """Eq. 14: ``α_b = min(α_max, r_b / 2)`` where ``r_b ≥ τ_safe``, else 0 (the safe zone)."""
        return eq14_step_size(self.current(), tau_safe, alpha_max, out=self.alpha)

    def for_fused_step(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(r, prev, prev_sq)`` for a step that folds its own features in (:meth:`CachedStep.policy_sparse`,
        which runs :func:`fold_features` on them); counted as :meth:`update` counts a step."""
        r = self.current()
        self.seen += 1
        return r, self.prev, self.prev_sq

    def update(self, feat: Tensor, probe_err: Tensor | None = None) -> Tensor:
        """Fold in this step's features ``feat (B, N', d)`` (and probe error ``(B,)``); returns next ``r``."""
        fold_features(self.r, self.prev, self.prev_sq, feat, probe_err, self.eta, self.seen >= 1)
        self.seen += 1
        return self.r
