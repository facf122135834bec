"""Exact structure of the training data that a continuous sampler does not hit on its own.

Three kinds, each measured on the fit split at training time and imposed on decoded samples
(:meth:`pyfdc.core.model.DiffusionModel.decode_samples`, before the support bounds' clamp, which wins
where a sample leaves the data's range), like the support bounds:

* :class:`BandLimit` — every series is band-limited: above a cutoff of its own the spectrum is exactly
  zero (series resampled to a common length by Fourier interpolation carry this; UEA JapaneseVowels'
  equal-length version has it in 98% of its utterances). A diffusion model leaves a residual there of
  about σ(t_eps) (~1e-3 of a channel's sd), and a classifier finds it at once: white noise of 1e-5 sd
  added to real JapaneseVowels series is told apart with 85% accuracy. The generated series' own
  cutoff is read off its spectrum (the highest bin whose amplitude reaches ``tau``) and everything above
  it is set to zero.
* :class:`SeriesNorm` — every series is z-normalised per channel (many UCR archives are: mean 0, sd 1 with
  ``ddof`` 0 or 1): each decoded sample is normalised the same way. A generator never hits that constraint
  exactly, and the series' own mean and sd then tell its samples from the data (a C2ST of 1.0 on ItalyPower).
* :class:`ValueGrid` — a channel's values lie on a decimal grid (stored with d decimals, or counts):
  the decoded values are rounded to it, so the samples carry the data's own storage precision.

Each is ``None`` (off) unless the fit split shows it; the tests that decide are in the ``fit`` methods.
Data stored so coarsely that rounding leaves more than ``ZERO_AMPLITUDE`` in the zero bins (a grid step
above ~1e-3 of a channel's sd) is not recognised as band-limited. Amplitudes are those of the orthonormal
DFT of each channel standardised over the fit split, the largest over channels: a relative scale, the
same for data and samples. The fits read the data a block of series at a time (``FIT_BLOCK``), so they
hold a few float64 copies of a block, not of the whole set.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["BandLimit", "SeriesNorm", "ValueGrid", "ExactStructure"]

ZERO_AMPLITUDE = 1e-3   # a data bin counts as zero below this relative amplitude (what storage leaves:
                        # ~1e-6 for 6 decimals on JapaneseVowels, ~1e-7 for float32 rounding)
BAND_LIMITED_SHARE = 0.5   # band-limited data: at least this share of series has a zero top bin ...
CUT_CLEAN_SHARE = 0.99  # ... and the cut at tau leaves at least this share of the fit series as they are
TAU_FRACTION = 0.25     # tau = this fraction of the data's smallest in-band top amplitude (1% quantile)
MIN_TAU = 1e-2          # below it no clear gap between zero and in-band bins (a sampler leaves ~1e-3)
NORM_TOLERANCE = 1e-5  # a series counts as z-normalised when |mean| and |sd - 1| are below this
MAX_DECIMALS = 9
FIT_BLOCK = 4096        # series per block when fitting
MIN_GRID_VALUES = 100


def _relative_amplitude(x: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``(S, N, M)`` -> ``(S, N//2 + 1)``: per bin, the largest orthonormal-DFT amplitude over channels, in
    units of each channel's ``sd (M,)``. The DC bin carries the series' mean and is never cut."""
    return (np.abs(np.fft.rfft(x, axis=1, norm="ortho")) / sd).max(axis=2)


def _last(flags: np.ndarray) -> np.ndarray:
    """``(S, K)`` booleans -> ``(S,)`` index of each row's last true entry (0 when none)."""
    return flags.shape[1] - 1 - np.argmax(flags[:, ::-1], axis=1)


class BandLimit:
    """Per-channel ``sd (M,)`` of the fit split (the relative scale) and ``tau``: bins of a sample above its
    highest bin of relative amplitude ``>= tau`` are set to zero (DC is never cut)."""

    def __init__(self, sd: Any, tau: float) -> None:
        self.sd = np.asarray(sd, dtype=np.float64).reshape(-1)
        self.tau = float(tau)
        if self.sd.size == 0 or not (np.isfinite(self.sd).all() and (self.sd > 0).all()):
            raise ValueError(f"band limit needs one positive finite sd per channel, got {self.sd.tolist()}")
        if not (np.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"band limit tau must be a positive number, got {tau!r}")

    @property
    def channels(self) -> int:
        return int(self.sd.size)

    @classmethod
    def fit(cls, x: np.ndarray) -> BandLimit | None:
        """The band limit of ``x (n, N, M)``, or ``None`` when fewer than half its series have an exactly
        zero top bin, when ``tau`` would fall below ``MIN_TAU`` (in-band amplitudes that come near zero: no
        gap a sampler's residual could be cut at), when the cut at ``tau`` would change more than 1% of the
        fit series themselves (full-band series mixed in), or when the series are too short (``N < 4``)."""
        arr = np.asarray(x)
        if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 4:
            return None
        sd = arr.std(axis=(0, 1), dtype=np.float64)
        sd = np.where(sd > 0, sd, 1.0)
        amp = np.concatenate([_relative_amplitude(arr[i:i + FIT_BLOCK].astype(np.float64), sd)
                              for i in range(0, len(arr), FIT_BLOCK)])            # (n, K)
        nonzero = amp >= ZERO_AMPLITUDE
        nonzero[:, 0] = True                                   # DC: the mean, never cut
        if (~nonzero[:, -1]).mean() < BAND_LIMITED_SHARE:
            return None
        cutoff = _last(nonzero)                                # highest nonzero bin per series
        limited = (cutoff > 0) & (cutoff < nonzero.shape[1] - 1)   # a flat series has no band edge
        top = amp[np.flatnonzero(limited), cutoff[limited]]
        tau = TAU_FRACTION * float(np.quantile(top, 0.01)) if top.size else 0.0
        if tau < MIN_TAU:   # no clear gap between zero and the in-band amplitudes
            return None
        keep = amp >= tau
        keep[:, 0] = True
        above = np.arange(amp.shape[1])[None, :] > _last(keep)[:, None]
        clean = ~(above & nonzero).any(axis=1)                 # the cut removes nothing but zeros
        return cls(sd, tau) if clean.mean() >= CUT_CLEAN_SHARE else None

    def apply(self, x: Tensor) -> Tensor:
        """Series ``(B, N, M)`` in the data's units with each series' spectrum cut above its own cutoff
        (computed in float64; returned in ``x.dtype``)."""
        if x.shape[-1] != self.sd.size:
            raise ValueError(f"series have M = {x.shape[-1]} channels, the band limit {self.sd.size}")
        spec = torch.fft.rfft(x.to(torch.float64), dim=1, norm="ortho")           # (B, K, M)
        sd = torch.as_tensor(self.sd, dtype=torch.float64, device=x.device)
        keep = (spec.abs() / sd).amax(dim=2) >= self.tau                       # (B, K): _relative_amplitude
        keep[:, 0] = True
        bins = torch.arange(keep.shape[1], device=x.device)
        cutoff = torch.where(keep, bins, torch.zeros_like(bins)).amax(dim=1)   # (B,)
        inside = (bins[None, :] <= cutoff[:, None]).to(spec.dtype)[:, :, None]
        return torch.fft.irfft(spec * inside, n=x.shape[1], dim=1, norm="ortho").to(x.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"sd": self.sd.tolist(), "tau": self.tau}

    @classmethod
    def from_dict(cls, d: Any) -> BandLimit:
        if not isinstance(d, dict) or not {"sd", "tau"} <= set(d):
            raise ValueError(f"band limit needs keys 'sd' and 'tau', got {d!r:.80}")
        return cls(d["sd"], d["tau"])


class _PerChannelList:
    """A part that is one list entry per channel under ``KEY`` (its attribute and its key in the checkpoint)."""

    KEY: str = ""
    LABEL: str = ""

    @property
    def channels(self) -> int:
        return len(getattr(self, self.KEY))

    def to_dict(self) -> dict[str, Any]:
        return {self.KEY: list(getattr(self, self.KEY))}

    @classmethod
    def from_dict(cls, d: Any) -> Any:
        if not isinstance(d, dict) or not isinstance(d.get(cls.KEY), list):
            raise ValueError(f"{cls.LABEL} needs a list under '{cls.KEY}', got {d!r:.80}")
        return cls(d[cls.KEY])


class SeriesNorm(_PerChannelList):
    """Per channel the ``ddof`` (0 or 1) its series are z-normalised with, or ``None`` (not normalised)."""

    KEY, LABEL = "ddof", "series norm"

    def __init__(self, ddof: Any) -> None:
        self.ddof = list(ddof)
        if not self.ddof or any(d is not None and (isinstance(d, bool) or d not in (0, 1)) for d in self.ddof):
            raise ValueError(f"series norm needs one entry per channel, each None, 0 or 1, got {ddof!r}")

    @classmethod
    def fit(cls, x: np.ndarray) -> SeriesNorm | None:
        """Per channel of ``x (n, N, M)`` (``N >= 3``): the ``ddof`` with which every series has mean 0 and sd 1
        to within :data:`NORM_TOLERANCE`; ``None`` when no channel is normalised."""
        arr = np.asarray(x)
        if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 3:
            return None
        found = []
        for ch in range(arr.shape[2]):
            v = arr[..., ch].astype(np.float64)               # one channel at a time
            centred = np.abs(v.mean(axis=1)).max() <= NORM_TOLERANCE
            unit = [d for d in (1, 0) if np.abs(v.std(axis=1, ddof=d) - 1).max() <= NORM_TOLERANCE]
            found.append(unit[0] if centred and unit else None)
        return None if all(d is None for d in found) else cls(found)

    def apply(self, x: Tensor) -> Tensor:
        """``x (B, N, M)`` with every series z-normalised on the channels that are (float64; ``x.dtype`` out)."""
        if x.shape[-1] != len(self.ddof):
            raise ValueError(f"series have M = {x.shape[-1]} channels, the series norm {len(self.ddof)}")
        xd = x.to(torch.float64)
        out = xd.clone()
        for ch, d in enumerate(self.ddof):
            if d is not None:
                v = xd[..., ch]
                sd = v.std(dim=1, correction=d, keepdim=True)
                out[..., ch] = (v - v.mean(dim=1, keepdim=True)) / torch.where(sd > 0, sd, torch.ones_like(sd))
        return out.to(x.dtype)


class ValueGrid(_PerChannelList):
    """Per channel the number of decimals its values are stored with, or ``None`` (not on a grid)."""

    KEY, LABEL = "decimals", "value grid"

    def __init__(self, decimals: Any) -> None:
        self.decimals = list(decimals)
        if not self.decimals or any(d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer))
                                                       or not 0 <= d <= MAX_DECIMALS) for d in self.decimals):
            raise ValueError(f"value grid needs one entry per channel, each None or 0..{MAX_DECIMALS}, "
                             f"got {decimals!r}")

    @classmethod
    def fit(cls, x: np.ndarray) -> ValueGrid | None:
        """The coarsest decimal grid ``10^-d`` each channel of ``x (n, N, M)`` lies on, to within the
        rounding of ``x``'s own dtype (half a unit in the last place); ``None`` when no channel is on one.
        A grid counts only when its step is at least four such tolerances at the channel's largest value
        and the channel has at least ``MIN_GRID_VALUES`` values: an off-grid value then lands within
        tolerance with probability <= 1/2, so data off every grid cannot pass by chance."""
        arr = np.asarray(x)
        if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.floating) or arr.shape[0] * arr.shape[1] < MIN_GRID_VALUES:
            return None
        # relative: half an ulp of the stored dtype, plus two of float64 for the check's own arithmetic
        half_ulp = 0.5 * float(np.finfo(arr.dtype).eps) + 2 * float(np.finfo(np.float64).eps)
        found = []
        for ch in range(arr.shape[2]):
            v = arr[..., ch].astype(np.float64).ravel()       # one channel at a time
            tol = half_ulp * np.abs(v)
            d_found = None
            for d in range(MAX_DECIMALS + 1):
                step = 10.0 ** -d
                if step < 4 * half_ulp * float(np.abs(v).max()):
                    break
                if (np.abs(v - np.round(v / step) * step) <= tol).all():
                    d_found = d
                    break
            found.append(d_found)
        return None if all(d is None for d in found) else cls(found)

    def apply(self, x: Tensor) -> Tensor:
        """``x (..., M)`` rounded channel-wise to the grid (float64 arithmetic; ``x.dtype`` out)."""
        if x.shape[-1] != len(self.decimals):
            raise ValueError(f"series have M = {x.shape[-1]} channels, the value grid {len(self.decimals)}")
        on = torch.tensor([d is not None for d in self.decimals], device=x.device)
        scale = torch.tensor([10.0 ** (d or 0) for d in self.decimals], dtype=torch.float64, device=x.device)
        xd = x.to(torch.float64)
        return torch.where(on, torch.round(xd * scale) / scale, xd).to(x.dtype)


class ExactStructure:
    """The :class:`BandLimit`, :class:`SeriesNorm` and :class:`ValueGrid` of a training set (each may be ``None``),
    applied in that order: the band limit changes every value, the norm every series, the grid rounds last."""

    PARTS: tuple[tuple[str, type], ...] = (("band_limit", BandLimit), ("norm", SeriesNorm), ("grid", ValueGrid))

    def __init__(self, *, band_limit: BandLimit | None = None, norm: SeriesNorm | None = None,
                 grid: ValueGrid | None = None) -> None:
        self.band_limit, self.norm, self.grid = band_limit, norm, grid
        if band_limit is None and norm is None and grid is None:
            raise ValueError("an exact structure needs at least one part (band_limit, norm or grid)")
        sizes = set()
        for name, cls in self.PARTS:
            part = getattr(self, name)
            if part is not None and not isinstance(part, cls):
                raise TypeError(f"{name} must be a {cls.__name__} or None, got {type(part).__name__}")
            if part is not None:
                sizes.add(part.channels)
        if len(sizes) > 1:
            raise ValueError(f"the parts of an exact structure are for different numbers of channels: {sorted(sizes)}")

    def _parts(self) -> list[Any]:
        return [p for p in (self.band_limit, self.norm, self.grid) if p is not None]

    @property
    def channels(self) -> int | None:
        parts = self._parts()
        return parts[0].channels if parts else None

    @classmethod
    def fit(cls, x: np.ndarray) -> ExactStructure | None:
        """Every part of ``x (n, N, M)`` (the fit split, the data's own units and dtype); ``None`` if none holds."""
        parts = {"band_limit": BandLimit.fit(x), "norm": SeriesNorm.fit(x), "grid": ValueGrid.fit(x)}
        return cls(**parts) if any(p is not None for p in parts.values()) else None

    def describe(self) -> str:
        """One phrase for messages, e.g. ``"a per-series band limit and values on a 1e-6 grid (12 of 12 channels)"``."""
        parts = [] if self.band_limit is None else ["a per-series band limit"]
        if self.norm is not None:
            on = [d for d in self.norm.ddof if d is not None]
            ddofs = " and ".join(f"ddof {d}" for d in sorted(set(on)))
            parts.append(f"every series z-normalised (sd with {ddofs}; {len(on)} of {len(self.norm.ddof)} channels)")
        if self.grid is not None:
            on = [d for d in self.grid.decimals if d is not None]
            steps = ", ".join(f"1e-{d}" if d else "1" for d in sorted(set(on)))
            parts.append(f"values on a {steps} grid ({len(on)} of {len(self.grid.decimals)} channels)")
        return " and ".join(parts)

    def apply(self, x: Tensor) -> Tensor:
        """Series ``(B, N, M)`` with every part imposed, in :attr:`PARTS` order."""
        for part in self._parts():
            x = part.apply(x)
        return x

    def to_dict(self) -> dict[str, Any]:
        return {name: None if getattr(self, name) is None else getattr(self, name).to_dict() for name, _ in self.PARTS}

    @classmethod
    def from_dict(cls, d: Any) -> ExactStructure:
        if not isinstance(d, dict) or not {"band_limit", "grid"} <= set(d):
            raise ValueError(f"exact structure needs keys 'band_limit' and 'grid', got {d!r:.80}")
        parts = {name: None if d.get(name) is None else kind.from_dict(d[name]) for name, kind in cls.PARTS}
        return cls(**parts)
