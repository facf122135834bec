"""Per-channel standardisation, saved with a model so samples come back in original units."""
from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

# float32 rounds a value v to within |v| * 2**-24. Data whose offset dwarfs its spread (pressure in Pa,
# 101325 + 0.01 sin; epoch seconds) loses its signal there: a channel needs float64 when that rounding at
# its largest magnitude exceeds this fraction of its spread (1e-4: far below what a model resolves).
FLOAT32_RESOLUTION = 1e-4


def float32_resolves(mean: Any, std: Any, peak: Any = None) -> bool:
    """Whether float32 holds data with per-channel ``mean``/``std`` (and largest magnitude ``peak``,
    default ``|mean| + 6 std``) to within ``FLOAT32_RESOLUTION`` of each channel's spread."""
    mean, std = np.abs(np.asarray(mean, dtype=np.float64)), np.asarray(std, dtype=np.float64)
    peak = mean + 6.0 * std if peak is None else np.asarray(peak, dtype=np.float64)
    spread = np.where(std > 0, std, np.maximum(mean, np.finfo(np.float64).tiny))  # constant channel: its level
    return bool((peak * 2.0 ** -24 <= FLOAT32_RESOLUTION * spread).all())


class Standardizer:
    """``(x - mean) / std`` per channel, with mean/std over samples and time of the training data.

    Channels with zero spread get ``std = 1`` (they are only centred), so ``inverse(transform(x)) == x``.
    """

    def __init__(self, mean: Any, std: Any) -> None:
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)  # (M,)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)    # (M,)
        if self.mean.shape != self.std.shape or self.mean.size == 0:
            raise ValueError(f"mean and std must be non-empty with the same length, got {self.mean.shape} and {self.std.shape}")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
            raise ValueError("mean must be finite and std finite and > 0")

    @property
    def channels(self) -> int:
        """M."""
        return int(self.mean.size)

    @property
    def needs_float64(self) -> bool:
        """True when float32 cannot hold the data in original units (see :func:`float32_resolves`): then
        :meth:`pyfdc.core.model.DiffusionModel.tokens_to_data` inverts in float64 and samples come back float64."""
        return not float32_resolves(self.mean, self.std)

    @classmethod
    def fit(cls, x: np.ndarray | torch.Tensor) -> Standardizer:
        """Fit on ``x`` (n, N, M) (any (..., M) works): statistics over every axis but the last."""
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
        return cls(mean, np.where(tiny, 1.0, std))

    def _stats(self, x: ArrayT) -> tuple[Any, Any]:
        if x.ndim < 1 or x.shape[-1] != self.channels:
            raise ValueError(f"x must have shape (..., N, {self.channels}) (M = {self.channels} channels), got {list(x.shape)}")
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
        """JSON-safe ``{"mean": [...], "std": [...]}``."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        """Inverse of ``to_dict``."""
        try:
            return cls(d["mean"], d["std"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"Standardizer.from_dict needs keys 'mean' and 'std', got {d!r}") from err

    def __repr__(self) -> str:
        return f"Standardizer(M={self.channels})"
