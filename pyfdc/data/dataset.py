"""The dataset container every loader returns, and its input checks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _dtype_for(raw: np.ndarray) -> type:
    """float32, unless ``raw`` is wider and float32 would round its signal away (a large offset over a
    small spread, e.g. 101325 + 0.01 sin): then float64 (:func:`pyfdc.data.standardize.float32_resolves`)."""
    if raw.dtype.kind not in "fiu" or (raw.dtype.kind == "f" and raw.dtype.itemsize <= 4) or raw.size == 0:
        return np.float32
    flat = np.asarray(raw, dtype=np.float64).reshape(-1, raw.shape[-1]) if raw.ndim == 3 else None
    if flat is None or not np.isfinite(flat).all():
        return np.float32
    from pyfdc.data.standardize import float32_resolves

    return np.float32 if float32_resolves(flat.mean(0), flat.std(0), np.abs(flat).max(0)) else np.float64


def check_series(x: Any, arg: str) -> np.ndarray:
    """Return ``x`` as a C-contiguous array of shape (n, N, M) — float32, or float64 when float32 would
    round the data's signal away; raise ValueError if not finite (in the input's own precision, or after
    the cast to float32: values beyond ±3.4e38 overflow)."""
    raw = np.asarray(x)
    if raw.dtype.kind in "fiu" and raw.size and not np.isfinite(raw).all():
        bad = int((~np.isfinite(raw)).sum())
        raise ValueError(f"{arg} contains {bad} NaN/Inf values; clean or drop them before use")
    if raw.ndim != 3 or 0 in raw.shape:
        raise ValueError(f"{arg} must have shape (n, N, M) with all sizes > 0, got {list(raw.shape)}")
    with np.errstate(over="ignore"):  # an overflow is reported below, in one line
        arr = np.ascontiguousarray(np.asarray(raw, dtype=_dtype_for(raw)))
    if not np.isfinite(arr).all():
        peak = float(np.abs(raw).max())
        raise ValueError(f"{arg} has values up to {peak:.3g}, beyond float32's range (3.4e38); rescale the data")
    return arr


@dataclass
class TimeSeriesDataset:
    """Train / held-out series in original units.

    ``train``: (n_train, N, M), ``test``: (n_test, N, M), same N and M; float32, or float64 where float32
    would round the data's signal away (see :func:`check_series`).
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
