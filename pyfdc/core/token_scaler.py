"""Per-coordinate standardisation of tokens: every (token, coordinate) gets its own train-set mean/std.

With the per-channel :class:`~pyfdc.data.Standardizer` alone, half-spectrum token ``k`` carries the
data's power at frequency ``k``: on an ECG the top half of the spectrum holds well under 1% of the
variance, so the forward SDE drowns those tokens first and the reverse process decides them only in
its last few steps. Standardising each coordinate after the DFT (as Crabbé et al.'s fdiff does)
gives every frequency unit variance, so all of them are noised and denoised on one time scale, and
the network's errors on a weak frequency shrink by that frequency's std when mapped back.

The map is affine and diagonal, so it is exactly invertible; pinned coordinates (``mask == 0``)
keep mean 0 and std 1 and stay exactly 0.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["TokenScaler", "SCALINGS"]

SCALINGS: tuple[str, ...] = ("channel", "token")


class TokenScaler:
    """``(z - mean) / std`` per token coordinate; ``mean``/``std`` are ``(T, C)``."""

    def __init__(self, mean: Any, std: Any) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if self.mean.ndim != 2 or self.mean.shape != self.std.shape or self.mean.size == 0:
            raise ValueError(f"TokenScaler mean and std must both be (T, C), got {self.mean.shape} and {self.std.shape}")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
            raise ValueError("TokenScaler mean must be finite and std finite and > 0")

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, C)``."""
        return (int(self.mean.shape[0]), int(self.mean.shape[1]))

    @classmethod
    def fit(cls, z: Tensor | np.ndarray, mask: Tensor | np.ndarray, min_std: float = 1e-6) -> TokenScaler:
        """Fit on tokens ``z (n, T, C)`` with free-coordinate ``mask (T, C)``.

        Coordinates with std below ``min_std`` (relative to the largest std; constant frequencies,
        e.g. an exactly periodic pad) are only centred, so tiny numeric noise is never blown up.
        """
        arr = z.detach().cpu().double().numpy() if isinstance(z, Tensor) else np.asarray(z, dtype=np.float64)
        m = mask.detach().cpu().double().numpy() if isinstance(mask, Tensor) else np.asarray(mask, dtype=np.float64)
        if arr.ndim != 3 or arr.shape[0] < 2 or m.shape != arr.shape[1:]:
            raise ValueError(f"TokenScaler.fit needs z (n >= 2, T, C) and mask (T, C), got {arr.shape} and {m.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("tokens contain NaN/Inf; cannot fit a TokenScaler")
        free = m > 0
        mean = np.where(free, arr.mean(axis=0), 0.0)
        std = arr.std(axis=0)
        tiny = ~free | (std <= min_std * max(float(std.max()), 1e-30))
        return cls(mean, np.where(tiny, 1.0, std))

    def _stats(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(z, Tensor) or z.dim() < 2 or tuple(z.shape[-2:]) != self.shape:
            raise ValueError(f"tokens must have shape (..., T, C) = (..., {self.shape[0]}, {self.shape[1]}), "
                             f"got {tuple(getattr(z, 'shape', ()))}")
        dtype = z.dtype if z.is_floating_point() else torch.float32
        return (torch.as_tensor(self.mean, dtype=dtype, device=z.device),
                torch.as_tensor(self.std, dtype=dtype, device=z.device))

    def transform(self, z: Tensor) -> Tensor:
        """Raw tokens ``(..., T, C)`` -> scaled tokens (same shape, dtype, device)."""
        mean, std = self._stats(z)
        return (z - mean) / std

    def inverse(self, z: Tensor) -> Tensor:
        """Scaled tokens ``(..., T, C)`` -> raw tokens."""
        mean, std = self._stats(z)
        return z * std + mean

    def to_dict(self) -> dict[str, list[list[float]]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenScaler:
        if not isinstance(d, dict) or "mean" not in d or "std" not in d:
            raise ValueError(f"TokenScaler.from_dict needs keys 'mean' and 'std', got {type(d).__name__}")
        return cls(d["mean"], d["std"])

    def __repr__(self) -> str:
        return f"TokenScaler(T={self.shape[0]}, C={self.shape[1]})"
