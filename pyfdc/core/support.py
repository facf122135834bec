"""Support bounds: the per-channel range ``[low, high]`` of the training data, kept by sampling.

Real series often live in a bounded range — beats normalised to ``[0, 1]``, a state of charge,
a price that cannot go below 0 — and a diffusion model trained on them still puts a little mass
outside it: its generated ECG beats dip to −0.05 below a baseline the data never crosses, which a
classifier sees at once (the series minimum alone tells them from real beats 91% of the time).
Image diffusion has the same problem with pixel ranges and answers it by clipping the denoised
estimate at every step ("static thresholding", Ho et al. 2020; Saharia et al. 2022). pyfdc does
the same in the series domain:

* at each step ``x̂₀ = (z − σ ε̂) / α`` is mapped to the time domain (the transform is linear),
  clamped to the bounds on every free coordinate, mapped back, and the noise prediction the solver
  uses becomes ``ε̂' = (z − α x̂₀') / σ`` (:class:`SupportClip`);
* the decoded series is clamped to the same bounds (``DiffusionModel.tokens_to_data``), so every
  sample lies inside the range of the training data.

The bounds are data statistics, like the standardiser: the minimum and maximum of each channel
over the fit split, recorded at training time (:meth:`SupportBounds.fit`). Data that never comes
near its observed extremes is untouched; where a bound is a hard edge the data piles up against,
the samples respect it. ``clip=False`` on the model (``pyfdc sample --clip off``) turns both off.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["SupportBounds", "SupportClip", "CLIP_MODES"]

CLIP_MODES: tuple[str, ...] = ("auto", "off")


class SupportBounds:
    """Per-channel ``low (M,)`` and ``high (M,)`` in the data's own units, ``low <= high``."""

    def __init__(self, low: Any, high: Any) -> None:
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        if self.low.shape != self.high.shape or self.low.size == 0:
            raise ValueError(f"support bounds need low and high of the same length M >= 1, got "
                             f"{self.low.shape} and {self.high.shape}")
        if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
            raise ValueError("support bounds must be finite")
        if (self.low > self.high).any():
            raise ValueError(f"support bounds need low <= high per channel, got low {self.low.tolist()} "
                             f"and high {self.high.tolist()}")

    @property
    def channels(self) -> int:
        return int(self.low.size)

    @classmethod
    def fit(cls, x: np.ndarray) -> SupportBounds:
        """Min and max over series and time of ``x (n, N, M)``, per channel."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 3 or arr.shape[0] < 1:
            raise ValueError(f"SupportBounds.fit needs x of shape (n >= 1, N, M), got {list(arr.shape)}")
        if not np.isfinite(arr).all():
            raise ValueError("x contains NaN/Inf; cannot fit support bounds")
        return cls(arr.min(axis=(0, 1)), arr.max(axis=(0, 1)))

    def clamp(self, x: Tensor) -> Tensor:
        """``x (..., N, M)`` in the data's units, clamped channel-wise."""
        if x.shape[-1] != self.channels:
            raise ValueError(f"series have M = {x.shape[-1]} channels, the bounds {self.channels}")
        lo = torch.as_tensor(self.low, dtype=x.dtype, device=x.device)
        hi = torch.as_tensor(self.high, dtype=x.dtype, device=x.device)
        return torch.maximum(torch.minimum(x, hi), lo)

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low.tolist(), "high": self.high.tolist()}

    @classmethod
    def from_dict(cls, d: Any) -> SupportBounds:
        if not isinstance(d, dict) or "low" not in d or "high" not in d:
            raise ValueError(f"support bounds need keys 'low' and 'high', got {d!r:.80}")
        return cls(d["low"], d["high"])


class SupportClip(nn.Module):
    """``ε̂ -> (z − α clamp(x̂₀)) / σ`` on ``(B, T, C)`` tokens, the clamp taken in the diffusion's
    time-domain units (standardised per channel, pinned entries shifted to 0 and left alone)."""

    def __init__(self, model: Any, bounds: SupportBounds, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        tr = model.transform
        if bounds.channels != tr.m:
            raise ValueError(f"support bounds are for M = {bounds.channels} channels, the model has {tr.m}")
        low, high = bounds.low.copy(), bounds.high.copy()
        if model.scaler is not None:  # the diffusion sees (x - mean) / std
            mean, std = np.asarray(model.scaler.mean), np.asarray(model.scaler.std)
            low, high = (low - mean) / std, (high - mean) / std
        lo = np.broadcast_to(low, (tr.n, tr.m)).copy()
        hi = np.broadcast_to(high, (tr.n, tr.m)).copy()
        if model.pins is not None:  # exact already (PinProjector); their diffusion value is 0, not the bound
            lo[model.pins.pin], hi[model.pins.pin] = -np.inf, np.inf
        self.transform, self.sde, self.token_scaler = tr, model.sde, model.token_scaler
        # in the sampler's dtype, so the per-step .to(dtype) below is a no-op
        self.register_buffer("lo", torch.as_tensor(lo, dtype=dtype), persistent=False)
        self.register_buffer("hi", torch.as_tensor(hi, dtype=dtype), persistent=False)
        self.register_buffer("mask", tr.mask(dtype=dtype), persistent=False)

    def _to_series(self, y: Tensor) -> Tensor:
        if self.token_scaler is not None:
            y = self.token_scaler.inverse(y) * self.mask.to(y.dtype)
        return self.transform._from_tokens(y)

    def _step_to_tokens(self, dx: Tensor) -> Tensor:
        """A *change* of the series -> the change of the tokens (the scalers' linear part only)."""
        dy = self.transform._to_tokens(dx) * self.mask.to(dx.dtype)
        if self.token_scaler is not None:
            dy = dy / self.token_scaler._stats(dy)[1]
        return dy

    def forward(self, eps_hat: Tensor, z: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = self.sde.marginal(t.to(z.dtype))
        a, s = alpha[:, None, None], sigma[:, None, None]
        x0 = self._to_series((z - s * eps_hat) / a)
        lo, hi = self.lo.to(x0.dtype), self.hi.to(x0.dtype)
        over = torch.maximum(torch.minimum(x0, hi), lo) - x0  # (B, N, M): zero inside the bounds
        # the transform is linear, so the clamp moves x0's tokens by T(over) and eps by -a/s of that
        return eps_hat - (a / s) * self._step_to_tokens(over)

    def wrap(self, eps_fn: Any, compile: bool = False) -> Any:
        """An ``eps_fn(z, t, i)`` (see :mod:`pyfdc.sampling.solvers`) whose output is clipped; with ``compile``
        the clip is one compiled graph (``fullgraph``) instead of ~15 eager ops per step (same values to
        float rounding)."""
        clip = torch.compile(self, fullgraph=True, dynamic=False) if compile else self

        def clipped(z: Tensor, t: Tensor, i: int) -> Tensor:
            return clip(eps_fn(z, t, i), z, t)
        return clipped
