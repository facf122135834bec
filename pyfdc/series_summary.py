"""Per-series summary statistics: what the C2ST's tree classifier sees, and so what the shadow test checks.

One definition for both users: :func:`pyfdc.evaluation.quality.c2st` (``"hgb"``) classifies on
:func:`summary_features`, and :func:`pyfdc.e2crf.shadow.statistic_shift` measures how far a cache moves each
of them — a gate that watches other statistics than the classifier can pass what the classifier detects
(``benchmarks/RESULTS.md``: a cache that left log curvature energy within 0.12 sd moved mean |Δ²x| by 0.42 sd,
and a classifier told its samples apart at 0.58–0.62). numpy only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pyfdc._arrays import as_series

__all__ = ["power_spectrum", "summary_features", "summary_feature_names"]

_LOG_FLOOR = 1e-12  # power floor inside log(.): far below any real band power in float32 data
PER_CHANNEL = ("mean", "std", "min", "max", "q05", "q95", "abs_diff", "abs_diff2", "first", "last",
               "start_level", "end_level")


def power_spectrum(x: np.ndarray) -> np.ndarray:
    """``(S, N, M)`` -> ``(S, N', M)`` power per series, bin and channel (orthonormal rFFT)."""
    return np.abs(np.fft.rfft(x, axis=1, norm="ortho")) ** 2


def _band_edges(num_bins: int, n_bands: int) -> np.ndarray:
    """Edges of ``n_bands`` geometric bands over bins 1..num_bins-1, each at least one bin wide."""
    edges = np.round(np.geomspace(1, num_bins, n_bands + 1)).astype(int)
    for i in range(1, n_bands + 1):
        edges[i] = min(max(edges[i], edges[i - 1] + 1), num_bins - (n_bands - i))
    return edges


def _log_band_power(x: np.ndarray, n_bands: int) -> np.ndarray:
    """``(S, N, M)`` -> ``(S, n_bands', M)`` log mean power in geometric bands of bins 1..N//2 (DC excluded)."""
    power = power_spectrum(x)  # (S, N', M)
    nb = power.shape[1]
    if nb < 2:
        return np.zeros((x.shape[0], 0, x.shape[2]))
    edges = _band_edges(nb, min(n_bands, nb - 1))
    bands = [power[:, lo:hi].mean(axis=1) for lo, hi in zip(edges[:-1], edges[1:])]
    return np.log(np.stack(bands, axis=1) + _LOG_FLOOR)


def summary_features(x: Any, n_bands: int = 8) -> np.ndarray:
    """Per-series summary statistics ``(S, F)``, named by :func:`summary_feature_names`.

    Per channel: mean, std, min, max, 5%/95% quantiles, mean |Δx| (roughness), mean |Δ²x|, first and
    last value, mean |x - x_last| over the first and last 10% of steps (edge level: a pinned start
    or a constant pad that wanders shows here), and log power in ``n_bands`` geometric frequency
    bands (DC excluded: the mean covers it). With M > 1 also every cross-channel correlation.
    """
    arr = as_series(x, "x")
    s, n, m = arr.shape
    d1, d2 = np.diff(arr, axis=1), np.diff(arr, n=2, axis=1) if n > 2 else np.zeros((s, 1, m))
    edge = max(1, n // 10)
    last = arr[:, -1:, :]
    cols = [arr.mean(1), arr.std(1), arr.min(1), arr.max(1), np.quantile(arr, 0.05, axis=1),
            np.quantile(arr, 0.95, axis=1), np.abs(d1).mean(1), np.abs(d2).mean(1), arr[:, 0], arr[:, -1],
            np.abs(arr[:, :edge] - arr[:, :1]).mean(1), np.abs(arr[:, -edge:] - last).mean(1)]
    feats = [np.stack(cols, axis=1).reshape(s, -1), _log_band_power(arr, n_bands).reshape(s, -1)]
    if m > 1:
        c = arr - arr.mean(1, keepdims=True)
        c /= np.sqrt((c**2).sum(1, keepdims=True)) + 1e-12
        corr = np.einsum("snm,snk->smk", c, c)
        iu = np.triu_indices(m, 1)
        feats.append(corr[:, iu[0], iu[1]])
    return np.concatenate(feats, axis=1)


def summary_feature_names(n: int, m: int, n_bands: int = 8) -> list[str]:
    """The name of each column of :func:`summary_features` for series of ``n`` steps and ``m`` channels:
    ``"abs_diff2[0]"`` (statistic[channel]), ``"band3[1]"``, ``"corr[0,2]"``."""
    nb = n // 2 + 1
    bands = 0 if nb < 2 else min(n_bands, nb - 1)
    names = [f"{stat}[{ch}]" for stat in PER_CHANNEL for ch in range(m)]
    names += [f"band{b}[{ch}]" for b in range(bands) for ch in range(m)]
    if m > 1:
        iu = np.triu_indices(m, 1)
        names += [f"corr[{i},{j}]" for i, j in zip(iu[0], iu[1])]
    return names
