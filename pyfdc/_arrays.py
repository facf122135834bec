"""Checked conversion of sample sets to ``(S, N, M)`` float64 arrays (shared by the statistics modules)."""
from __future__ import annotations

from typing import Any

import numpy as np


def as_series(x: Any, arg: str) -> np.ndarray:
    """``(S, N, M)`` float64 array; a one-line error naming ``arg`` otherwise."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency of pyfdc
        pass
    arr = np.asarray(x)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 2 or arr.shape[2] < 1:
        raise ValueError(f"{arg} must have shape (S, N >= 2, M) (or (S, N)), got {list(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{arg} must be numeric, got {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{arg} contains NaN/Inf")
    return arr


def check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"{names[0]} and {names[1]} must share (N, M), got {a.shape[1:]} and {b.shape[1:]}")
