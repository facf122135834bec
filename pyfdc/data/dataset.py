"""The dataset container every loader returns, and its input checks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def check_series(x: Any, arg: str) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 array of shape (n, N, M); raise ValueError if not finite
    (in the input's own precision, or after the cast to float32: values beyond ±3.4e38 overflow)."""
    raw = np.asarray(x)
    if raw.dtype.kind in "fiu" and raw.size and not np.isfinite(raw).all():
        bad = int((~np.isfinite(raw)).sum())
        raise ValueError(f"{arg} contains {bad} NaN/Inf values; clean or drop them before use")
    with np.errstate(over="ignore"):  # an overflow is reported below, in one line
        arr = np.ascontiguousarray(np.asarray(raw, dtype=np.float32))
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(f"{arg} must have shape (n, N, M) with all sizes > 0, got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        peak = float(np.abs(raw).max())
        raise ValueError(f"{arg} has values up to {peak:.3g}, beyond float32's range (3.4e38); rescale the data")
    return arr


@dataclass
class TimeSeriesDataset:
    """Train / held-out series in original units.

    ``train``: (n_train, N, M) float32, ``test``: (n_test, N, M) float32, same N and M.
    ``meta``: JSON-safe description (fs, source, split, preprocessing, ...).
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train = check_series(self.train, f"{self.name}.train")
        self.test = check_series(self.test, f"{self.name}.test")
        if self.train.shape[1:] != self.test.shape[1:]:
            raise ValueError(
                f"{self.name}: train (N, M) = {self.train.shape[1:]} differs from test (N, M) = {self.test.shape[1:]}"
            )

    @property
    def length(self) -> int:
        """N, time steps per series."""
        return int(self.train.shape[1])

    @property
    def channels(self) -> int:
        """M, channels per series."""
        return int(self.train.shape[2])

    def __repr__(self) -> str:
        return (f"TimeSeriesDataset(name={self.name!r}, train={self.train.shape}, "
                f"test={self.test.shape}, N={self.length}, M={self.channels})")
