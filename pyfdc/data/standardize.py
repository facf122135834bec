"""Per-channel (or per-position) standardisation, saved with a model so samples come back in original units.

Per position (``Standardizer.fit(x, per_position=True)``, ``pyfdc train --scaling position``) every time
step of every channel gets its own mean and a smoothed sd over the fit series. The map stays an exact
affine bijection, so a perfect model is unaffected; what changes is where a real model's errors land:
they come back multiplied by each position's sd, so a position where all series agree (a resting start, a
phase-locked onset) gets proportionally less of the network's residual noise.
"""
from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

# float32 rounds a value v to within |v| * 2**-24. Data whose offset dwarfs its spread (pressure in Pa,
# 101325 + 0.01 sin; epoch seconds) loses its signal there: a channel needs float64 when that rounding at
# its largest magnitude exceeds this fraction of its spread (1e-4: far below what a model resolves).
FLOAT32_RESOLUTION = 1e-4
# Per-position sds are smoothed over time with a window of N / SMOOTH_DIVISOR steps (at least 3): with few
# fit series (36 on BasicMotions: a sd's standard error ~12%) raw per-step sds would modulate every sample
# by their own estimation noise. Floored at SD_FLOOR of the channel's sd, so no position's errors are
# amplified by a near-zero divisor when it is mapped in.
SMOOTH_DIVISOR = 16
SD_FLOOR = 0.02


def float32_resolves(mean: Any, std: Any, peak: Any = None) -> bool:
    """Whether float32 holds data with per-channel ``mean``/``std`` (and largest magnitude ``peak``,
    default ``|mean| + 6 std``) to within ``FLOAT32_RESOLUTION`` of each channel's spread."""
    mean, std = np.abs(np.asarray(mean, dtype=np.float64)), np.asarray(std, dtype=np.float64)
    peak = mean + 6.0 * std if peak is None else np.asarray(peak, dtype=np.float64)
    spread = np.where(std > 0, std, np.maximum(mean, np.finfo(np.float64).tiny))  # constant channel: its level
    return bool((peak * 2.0 ** -24 <= FLOAT32_RESOLUTION * spread).all())


def _as_stats(v: Any) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64)
    return arr.reshape(-1) if arr.ndim < 2 else arr


def _smoothed_sd(var: np.ndarray, channel_sd: np.ndarray) -> np.ndarray:
    """Per-position variances ``(N, M)`` -> sds smoothed over N (a normalised moving average that skips
    constant positions, which keep sd 1), floored at ``SD_FLOOR`` x ``channel_sd (M,)``."""
    n = var.shape[0]
    w = max(3, n // SMOOTH_DIVISOR) | 1
    live = var > 1e-24 * np.maximum(channel_sd, 1e-300) ** 2
    kernel = np.ones(w)

    def smooth(a: np.ndarray) -> np.ndarray:  # (N, M) -> (N, M), edges extended
        return np.stack([np.convolve(np.pad(c, w // 2, mode="edge"), kernel, "valid") for c in a.T], -1)

    num, den = smooth(var * live), smooth(live.astype(np.float64))
    sd = np.sqrt(np.where(den > 0, num / np.maximum(den, 1e-300), 0.0))
    return np.where(live, np.maximum(sd, SD_FLOOR * channel_sd), 1.0)


class Standardizer:
    """``(x - mean) / std`` with mean/std over the training data: per channel ``(M,)`` (over samples and
    time), or per position ``(N, M)`` (over samples; see :meth:`fit`).

    Channels (positions) with zero spread get ``std = 1`` (they are only centred), so ``inverse(transform(x)) == x``.
    """

    def __init__(self, mean: Any, std: Any) -> None:
        self.mean = _as_stats(mean)  # (M,) or (N, M)
        self.std = _as_stats(std)
        if self.mean.shape != self.std.shape or self.mean.size == 0 or self.mean.ndim > 2:
            raise ValueError(f"mean and std must be non-empty (M,) or (N, M) arrays of one shape, got "
                             f"{self.mean.shape} and {self.std.shape}")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
            raise ValueError("mean must be finite and std finite and > 0")

    @property
    def channels(self) -> int:
        """M."""
        return int(self.mean.shape[-1])

    @property
    def positions(self) -> int | None:
        """N for per-position statistics, ``None`` for per-channel ones."""
        return int(self.mean.shape[0]) if self.mean.ndim == 2 else None

    @property
    def needs_float64(self) -> bool:
        """True when float32 cannot hold the data in original units (see :func:`float32_resolves`): then
        :meth:`pyfdc.core.model.DiffusionModel.tokens_to_data` inverts in float64 and samples come back float64."""
        return not float32_resolves(self.mean, self.std)

    @classmethod
    def fit(cls, x: np.ndarray | torch.Tensor, per_position: bool = False) -> Standardizer:
        """Fit on ``x`` (n, N, M) (any (..., M) works): statistics over every axis but the last; with
        ``per_position`` over the first axis only, the sds smoothed over N (:data:`SMOOTH_DIVISOR`)."""
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        arr = arr.astype(np.float64, copy=False)
        if arr.ndim < 2 or arr.shape[-1] == 0 or arr.size == 0:
            raise ValueError(f"x must have shape (n, N, M) with data, got {list(arr.shape)}")
        if not np.isfinite(arr).all():
            raise ValueError("x contains NaN/Inf; cannot fit a Standardizer")
        flat = arr.reshape(-1, arr.shape[-1])
        mean, std = flat.mean(axis=0), flat.std(axis=0)
        # Constant channels (std ~ 0 relative to their own level) are left unscaled. Relative only: an
        # absolute floor would call a signal in volts x 1e-13 constant.
        tiny = (std == 0) | (std <= 1e-12 * np.abs(mean))
        std = np.where(tiny, 1.0, std)
        if not per_position:
            return cls(mean, std)
        if arr.ndim != 3:
            raise ValueError(f"per-position statistics need x of shape (n, N, M), got {list(arr.shape)}")
        return cls(arr.mean(axis=0), _smoothed_sd(arr.var(axis=0), std))

    def _stats(self, x: ArrayT) -> tuple[Any, Any]:
        if x.ndim < 1 or x.shape[-1] != self.channels or (self.positions is not None and
                                                          (x.ndim < 2 or x.shape[-2] != self.positions)):
            n = "N" if self.positions is None else self.positions
            raise ValueError(f"x must have shape (..., {n}, {self.channels}) (M = {self.channels} channels), "
                             f"got {list(x.shape)}")
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            return (torch.as_tensor(self.mean, dtype=dtype, device=x.device),
                    torch.as_tensor(self.std, dtype=dtype, device=x.device))
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        return self.mean.astype(dtype), self.std.astype(dtype)

    def transform(self, x: ArrayT) -> ArrayT:
        """Original units -> standardised; numpy or torch, shape (..., N, M), dtype/device kept."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def inverse(self, x: ArrayT) -> ArrayT:
        """Standardised -> original units; numpy or torch, shape (..., N, M), dtype/device kept."""
        mean, std = self._stats(x)
        return x * std + mean

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-safe ``{"mean": [...], "std": [...]}`` (nested ``[N][M]`` lists per position)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        """Inverse of ``to_dict``."""
        try:
            return cls(d["mean"], d["std"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"Standardizer.from_dict needs keys 'mean' and 'std', got {d!r}") from err

    def __repr__(self) -> str:
        where = "" if self.positions is None else f"N={self.positions}, "
        return f"Standardizer({where}M={self.channels})"
