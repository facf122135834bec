"""The shadow test's statistics: how far a cached sample set moved from its uncached, same-noise twin.

Used by the calibration (:mod:`pyfdc.e2crf.calibrate`) to accept or reject a budget on a few shadow series,
and by the front as diagnostics beside the C2ST. ``candidate[i]`` and ``reference[i]`` share noise (same
seed and sample id), so per-series differences are the cache's own error, not sampling noise.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pyfdc._arrays import as_series as _series
from pyfdc._arrays import check_same_shape as _same_shape
from pyfdc.series_summary import power_spectrum, summary_feature_names, summary_features

__all__ = ["same_noise_pairs", "band_edges", "power_spectrum", "band_spectral_error", "statistic_shift",
           "paired_deviation"]

_LOG_FLOOR = 1e-12  # power floor inside log(.): far below any real band power in float32 data


def same_noise_pairs(a: Any, b: Any) -> bool:
    """Whether ``a[i]`` and ``b[i]`` look like same-noise twins: equal shapes and a median distance between
    partners below half the median distance to another set member (``b[i+1]``). Relative to the
    set's own spread, so it holds for data far from zero (Sines in [0, 1]) as for centred data."""
    if np.shape(a) != np.shape(b) or len(a) < 2:
        return False
    xa, xb = _series(a, "a"), _series(b, "b")
    partner = np.sqrt(((xa - xb) ** 2).sum((1, 2)))
    other = np.sqrt(((xa - np.roll(xb, 1, axis=0)) ** 2).sum((1, 2)))
    return bool(np.median(partner) < 0.5 * np.median(other))


def band_edges(num_bins: int, fractions: tuple[float, ...] = (0.1, 0.3, 0.6)) -> list[tuple[int, int]]:
    """Half-open bin ranges ``[lo, hi)`` covering ``0..num_bins``: cut at ``fractions`` of ``num_bins``.

    For N' = 94 the defaults give κ < 9, 9–28, 28–56, ≥ 56 (low, mid, high, top).
    """
    cuts = [0] + [int(round(f * num_bins)) for f in fractions] + [num_bins]
    cuts = sorted(set(min(max(c, 0), num_bins) for c in cuts))
    return [(lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo]


def _mean_psd(x: np.ndarray) -> np.ndarray:
    """``(S, N, M)`` -> ``(N', M)`` mean power per bin and channel."""
    return power_spectrum(x).mean(axis=0)


def band_spectral_error(candidate: Any, reference: Any,
                        fractions: tuple[float, ...] = (0.1, 0.3, 0.6)) -> dict[str, float]:
    """Per band: ``exp(mean over bins and channels of log(PSD_cand / PSD_ref)) - 1``.

    ``+0.27`` means the candidate has 27% more power in that band than the reference (geometric
    mean over the band's bins). Exactly 0 for a set against itself. Keys ``"k{lo}-{hi}"``.
    """
    c, r = _series(candidate, "candidate"), _series(reference, "reference")
    _same_shape(c, r, ("candidate", "reference"))
    pc, pr = _mean_psd(c), _mean_psd(r)
    ratio = np.log(pc + _LOG_FLOOR) - np.log(pr + _LOG_FLOOR)
    return {f"k{lo}-{hi}": float(np.expm1(ratio[lo:hi].mean())) for lo, hi in band_edges(pr.shape[0], fractions)}


def statistic_shift(candidate: Any, reference: Any, fractions: tuple[float, ...] = (0.1, 0.3, 0.6),
                    summaries: bool = True) -> dict[str, float]:
    """How far a same-noise candidate moves per-series statistics, in units of their spread across series.

    For each statistic ``L_i`` of series ``i`` the standardised paired shift ``|mean_i(d_i)| / sd_i(Lr_i)`` of
    ``d_i = Lc_i - Lr_i`` (Cohen's d of a paired change), the largest over channels (keys below).
    ``|mean(d)|`` is debiased, ``sqrt(max(mean(d)² - var(d)/S, 0))`` (``mean(d)²`` overestimates the squared
    shift by ``var(d)/S``), so a few shadow series with large but unsystematic changes do not read as a shift.

    The statistics: the log power in each frequency band (``"k{lo}-{hi}"``) and the log curvature energy, mean
    squared second difference (``"curvature"``) — and with ``summaries`` every statistic the C2ST's tree
    classifier sees (:func:`pyfdc.series_summary.summary_features`; keys ``"abs_diff2"``, ``"band3"``,
    ``"corr"`` …): a shift of one of them by ``g`` sd alone lets a classifier reach ``Φ(g/2)`` (two Gaussians),
    so ``g = 0.15`` is ~0.53. Scale-free: a band with little power is judged by its own spread. Curvature sees
    what spectra of short non-periodic series hide under edge leakage (TimeGAN's Sines: a cache at paired
    deviation 0.001 doubled it); mean |Δ²x| sees jitter on flat stretches that the squared form, dominated by
    peaks, hides (the shipped ECG model: 0.12 sd in curvature, 0.42 in mean |Δ²x|, C2ST 0.58–0.62).
    ``candidate[i]`` and ``reference[i]`` must share noise; ``N >= 3``.
    """
    c, r = _series(candidate, "candidate"), _series(reference, "reference")
    if c.shape != r.shape or c.shape[0] < 2 or c.shape[1] < 3:
        raise ValueError(f"statistic_shift needs equal shapes (same sample ids), >= 2 series and N >= 3, "
                         f"got {c.shape} and {r.shape}")
    pc, pr = power_spectrum(c), power_spectrum(r)  # (S, K, M)
    floor = _LOG_FLOOR * max(float(pr.mean()), np.finfo(np.float64).tiny)  # relative: the shift stays scale-free
    stats = {f"k{lo}-{hi}": (np.log(pc[:, lo:hi].mean(1) + floor), np.log(pr[:, lo:hi].mean(1) + floor))
             for lo, hi in band_edges(pr.shape[1], fractions)}  # (S, M) each
    curv = [(np.diff(x, 2, axis=1) ** 2).mean(1) for x in (c, r)]
    cfloor = _LOG_FLOOR * max(float(curv[1].mean()), np.finfo(np.float64).tiny)
    stats["curvature"] = (np.log(curv[0] + cfloor), np.log(curv[1] + cfloor))
    out = {name: float(np.max(_paired_shift(lc, lr, 0.0))) for name, (lc, lr) in stats.items()}
    if summaries:
        scale = float(r.std()) or 1.0  # in the reference's units: the features' log floors stay scale-free
        fc, fr = summary_features(c / scale), summary_features(r / scale)
        # a statistic (nearly) constant over the reference's series, e.g. a pinned first value: judged against
        # a tolerance of 1e-6 of its size and the data's, so float rounding does not read as a shift
        tol = 1e-6 * (np.abs(fr).mean(0) + 1.0)
        shifts = _paired_shift(fc, fr, tol)
        for name, v in zip(summary_feature_names(c.shape[1], c.shape[2]), shifts):
            key = name.split("[")[0]
            out[key] = max(out.get(key, 0.0), float(v))
    return out


def _paired_shift(lc: np.ndarray, lr: np.ndarray, tol: Any) -> np.ndarray:
    """``(S, F)`` paired statistics -> ``(F,)`` debiased |mean shift| / spread; spread <= ``tol``: any shift
    beyond ``tol`` is infinite."""
    d = lc - lr
    spread = lr.std(axis=0, ddof=1)
    shift = np.sqrt(np.maximum(d.mean(axis=0) ** 2 - d.var(axis=0, ddof=1) / len(d), 0.0))
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), spread.shape)
    return np.where(spread > tol, shift / np.maximum(spread, 1e-300), np.where(shift > tol, np.inf, 0.0))


def paired_deviation(candidate: Any, reference: Any,
                     fractions: tuple[float, ...] = (0.1, 0.3, 0.6)) -> dict[str, Any]:
    """Relative RMS distance of each candidate from its same-noise reference, overall and per band.

    ``candidate[i]`` and ``reference[i]`` must come from the same noise (same seed and sample id).
    A diagnostic of a cache's own error, **not** a quality score: a sampler with fewer steps
    follows another path from the same noise and scores badly here while sampling as well.
    """
    c, r = _series(candidate, "candidate"), _series(reference, "reference")
    if c.shape != r.shape:
        raise ValueError(f"paired_deviation needs equal shapes (same sample ids), got {c.shape} and {r.shape}")
    rel = np.sqrt(((c - r) ** 2).sum((1, 2)) / np.maximum((r**2).sum((1, 2)), 1e-30))
    fc, fr = np.fft.rfft(c, axis=1, norm="ortho"), np.fft.rfft(r, axis=1, norm="ortho")
    bands = {}
    for lo, hi in band_edges(fr.shape[1], fractions):
        num = (np.abs(fc[:, lo:hi] - fr[:, lo:hi]) ** 2).sum()
        bands[f"k{lo}-{hi}"] = float(np.sqrt(num / max((np.abs(fr[:, lo:hi]) ** 2).sum(), 1e-30)))
    return {"mean": float(rel.mean()), "median": float(np.median(rel)), "p95": float(np.quantile(rel, 0.95)),
            "bands": bands}
