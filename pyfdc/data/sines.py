"""Sines: the time-series-generation literature's synthetic benchmark, as TimeGAN defines it.

Yoon, Jarrett & van der Schaar (NeurIPS 2019), ``sine_data_generation``: each of the ``M`` channels of
a series is ``sin(f·j + φ)`` for steps ``j = 0..N-1`` with its own frequency ``f`` and phase ``φ``
drawn uniformly from ``[0, 0.1]``, then mapped to ``[0, 1]`` by ``(x + 1) / 2``. The field's setting
(TimeGAN, Diffusion-TS Table 1) is 10,000 series of ``N = 24`` steps and ``M = 5`` channels.
"""
from __future__ import annotations

import numpy as np

from .dataset import TimeSeriesDataset

__all__ = ["make_sines", "load_sines", "SINES_TRAIN", "SINES_TEST"]

SINES_TRAIN = 10_000
SINES_TEST = 2_000


def make_sines(num_series: int, length: int = 24, channels: int = 5, seed: int = 0) -> np.ndarray:
    """``(num_series, length, channels)`` float32 Sines series in ``[0, 1]`` (seeded)."""
    for name, v in (("num_series", num_series), ("length", length), ("channels", channels)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.0, 0.1, size=(num_series, 1, channels))
    phase = rng.uniform(0.0, 0.1, size=(num_series, 1, channels))
    steps = np.arange(length, dtype=np.float64)[None, :, None]
    return ((np.sin(freq * steps + phase) + 1.0) * 0.5).astype(np.float32)


def load_sines() -> TimeSeriesDataset:
    """10,000 training series (seed 0) and 2,000 independent held-out series (seed 1); N = 24, M = 5."""
    return TimeSeriesDataset("sines", make_sines(SINES_TRAIN, seed=0), make_sines(SINES_TEST, seed=1), meta={
        "source": "TimeGAN's sine generator (f, phase ~ U[0, 0.1]; (sin + 1) / 2)",
        "split": "independent draws: train seed 0, held-out seed 1"})
