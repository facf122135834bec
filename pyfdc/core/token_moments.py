"""Per-coordinate Gaussian moments of the training tokens, and the noise prediction they imply.

If a token coordinate ``x0`` were Gaussian, ``N(μ, λ)``, the VP marginal ``z = α x0 + σ ε`` would
give the exact noise prediction

    E[ε | z] = σ (z − α μ) / (α² λ + σ²)                                   (elementwise)

— linear in ``z``, known in closed form at every ``t``. In the half-spectrum basis the DFT nearly
diagonalises a stationary series' covariance, so this diagonal Gaussian is the part of the score a
frequency-domain network mostly learns first; what the network adds on top is the non-Gaussian rest.

The cached E2-CRF step uses that split as a control variate (``cached_output="gaussian"``): a cached
token answers ``E[ε | z_now, t_now] + (ε̂ − E[ε | z, t])`` at its last recompute, so the part of its
answer that follows the injected noise and the clock is exact, and only the non-Gaussian rest is
stale. The moments are data statistics of the fit split, like the standardiser, written by training
into the checkpoint (:meth:`TokenMoments.fit`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["TokenMoments"]


class TokenMoments:
    """``mean (T, C)`` and ``var (T, C)`` of the tokens the network is trained on (``var >= 0``)."""

    def __init__(self, mean: Any, var: Any) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.var = np.asarray(var, dtype=np.float64)
        if self.mean.ndim != 2 or self.mean.shape != self.var.shape or self.mean.size == 0:
            raise ValueError(f"TokenMoments mean and var must both be (T, C), got {self.mean.shape} and {self.var.shape}")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.var).all()) or (self.var < 0).any():
            raise ValueError("TokenMoments mean must be finite and var finite and >= 0")

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, C)``."""
        return (int(self.mean.shape[0]), int(self.mean.shape[1]))

    @classmethod
    def fit(cls, z: Tensor | np.ndarray) -> TokenMoments:
        """Mean and (population) variance over ``z (n >= 2, T, C)``, the tokens as the network sees them."""
        arr = z.detach().cpu().double().numpy() if isinstance(z, Tensor) else np.asarray(z, dtype=np.float64)
        if arr.ndim != 3 or arr.shape[0] < 2:
            raise ValueError(f"TokenMoments.fit needs tokens of shape (n >= 2, T, C), got {list(arr.shape)}")
        if not np.isfinite(arr).all():
            raise ValueError("tokens contain NaN/Inf; cannot fit TokenMoments")
        return cls(arr.mean(axis=0), arr.var(axis=0))

    def tensors(self, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """``(mean, var)`` as ``(T, C)`` tensors."""
        return (torch.as_tensor(self.mean, dtype=dtype, device=device),
                torch.as_tensor(self.var, dtype=dtype, device=device))

    def posterior_eps(self, z: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """``E[ε | z]`` under ``N(mean, diag var)``: ``z (B, T, C)``, ``alpha, sigma (B,)`` -> ``(B, T, C)``."""
        if z.dim() != 3 or tuple(z.shape[1:]) != self.shape:
            raise ValueError(f"tokens must be (B, {self.shape[0]}, {self.shape[1]}), got {tuple(z.shape)}")
        mean, var = self.tensors(z.dtype, z.device)
        return gaussian_eps(z, alpha[:, None, None], sigma[:, None, None], mean, var)

    def to_dict(self) -> dict[str, list[list[float]]]:
        return {"mean": self.mean.tolist(), "var": self.var.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenMoments:
        if not isinstance(d, dict) or "mean" not in d or "var" not in d:
            raise ValueError(f"TokenMoments.from_dict needs keys 'mean' and 'var', got {type(d).__name__}")
        return cls(d["mean"], d["var"])

    def __repr__(self) -> str:
        return f"TokenMoments(T={self.shape[0]}, C={self.shape[1]})"


def gaussian_eps(z: Tensor, a: Tensor, s: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """``σ (z − α μ) / (α² λ + σ²)`` with broadcastable ``a``, ``s`` (e.g. ``(B, 1, 1)``)."""
    return s * (z - a * mean) / (a * a * var + s * s)
