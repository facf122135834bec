"""The development suite: real datasets plus the field's Sines, each with a fixed train/held-out split.

Read at benchmark/test time only. The embedded ECG and Sines come with pyfdc; the UCR/UEA sets
are read from the files the ``aeon`` package ships (``pip install '.[suite]'``; only its data
files are used, aeon is never imported). Splits never put pieces of one recording on both sides:

| name | source | N × M | train / held-out | split |
|---|---|---|---|---|
| ecg | embedded MIT-BIH record 208 | 187 × 1 | 374 / 91 | by time |
| italypower | UCR ItalyPowerDemand (daily load profiles) | 24 × 1 | 877 / 219 | whole days, seeded 80/20 |
| gunpoint | UCR GunPoint (hand motion traces) | 150 × 1 | 160 / 40 | whole series, seeded 80/20 |
| acsf1 | UCR ACSF1 (appliance power), 10 disjoint windows per recording | 146 × 1 | 1,600 / 400 | by recording, then windows |
| osuleaf | UCR OSULeaf (leaf outlines) | 427 × 1 | 354 / 88 | whole series, seeded 80/20 |
| basicmotions | UEA BasicMotions (watch accelerometer + gyroscope) | 100 × 6 | 40 / 40 | the archive's split |
| japanesevowels | UEA JapaneseVowels, equal-length version (LPC cepstra) | 25 × 12 | 512 / 128 | whole utterances, seeded 80/20 |
| sines | TimeGAN's generator | 24 × 5 | 10,000 / 2,000 | independent draws |

ItalyPowerDemand, GunPoint and OSULeaf are z-normalised per series in the archive (sd with ddof 1); generated
series get the same normalisation before they are scored against them (:func:`znorm_like`).
Seeded splits use seed 42 over whole series (``pyfdc.data.loaders`` uses the same rule for the
paper's datasets). BasicMotions keeps the archive's 40/40 split: 80 series are too few to hold out
a fifth. Left alone on purpose (kept for checks not given to development): the UCR Pig* sets,
anything else from that study, and skfolio's stock prices.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pyfdc.data import TimeSeriesDataset, load_embedded_ecg
from pyfdc.data.loaders import SPLIT_SEED, _split
from pyfdc.data.sines import load_sines
from pyfdc.data.ucr import read_ucr

SUITE_EXTRA = "pip install 'pyfdc[suite]' (or: pip install --no-deps aeon==1.6.0; only its data files are read)"
ACSF1_WINDOW = 146


class SuiteDataMissing(FileNotFoundError):
    """A suite dataset's files are not installed; the message names the extra to install."""


def aeon_data_dir() -> Path:
    """``<site-packages>/aeon/datasets/data`` of the installed aeon, found without importing aeon."""
    spec = importlib.util.find_spec("aeon")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        folder = Path(root) / "datasets" / "data"
        if folder.is_dir():
            return folder
    raise SuiteDataMissing(f"the suite's UCR/UEA datasets come from the aeon package, which is not installed: {SUITE_EXTRA}")


def _archive(name: str, stem: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    folder = aeon_data_dir() / name
    stem = stem or name
    paths = [folder / f"{stem}_{part}.ts" for part in ("TRAIN", "TEST")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SuiteDataMissing(f"{missing[0]} is missing from the installed aeon: {SUITE_EXTRA}")
    return read_ucr(paths[0])[0], read_ucr(paths[1])[0]


def _pooled(name: str, stem: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    return _split(np.concatenate(_archive(name, stem)))


def _windows(x: np.ndarray, width: int) -> np.ndarray:
    """Disjoint windows ``(S · ⌊N/width⌋, width, M)`` cut from each series in order."""
    k = x.shape[1] // width
    return x[:, :k * width].reshape(x.shape[0] * k, width, x.shape[2])


def _ucr_set(name: str, train: np.ndarray, test: np.ndarray, source: str, split: str) -> TimeSeriesDataset:
    return TimeSeriesDataset(name, train, test, meta={"source": source, "split": split})


def load_italypower() -> TimeSeriesDataset:
    tr, te = _pooled("ItalyPowerDemand")
    ds = _ucr_set("italypower", tr, te, "UCR ItalyPowerDemand (aeon)", f"pooled archive, whole days, 80/20 seed {SPLIT_SEED}")
    ds.meta["per_series_znorm_ddof"] = 1
    return ds


def load_gunpoint() -> TimeSeriesDataset:
    tr, te = _pooled("GunPoint")
    ds = _ucr_set("gunpoint", tr, te, "UCR GunPoint (aeon)", f"pooled archive, whole series, 80/20 seed {SPLIT_SEED}")
    ds.meta["per_series_znorm_ddof"] = 1
    return ds


def znorm_like(ds: TimeSeriesDataset, x: np.ndarray) -> np.ndarray:
    """The archive's own preprocessing applied to generated series ``x (S, N, M)``: where every series of the
    archive is z-normalised (mean 0, sd 1 with ``ddof``), ``x`` gets the same; otherwise ``x`` unchanged.
    A generator cannot hit an exact per-series constraint, and a classifier sees that at once (C2ST 1.0
    from the series mean alone), so the model question is asked of the normalised series."""
    ddof = ds.meta.get("per_series_znorm_ddof")
    if ddof is None:
        return x
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(axis=1, ddof=ddof, keepdims=True)
    return ((x - x.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def load_acsf1() -> TimeSeriesDataset:
    tr, te = _pooled("ACSF1")
    return _ucr_set("acsf1", _windows(tr, ACSF1_WINDOW), _windows(te, ACSF1_WINDOW), "UCR ACSF1 (aeon)",
                    f"pooled recordings split 80/20 seed {SPLIT_SEED}, then {ACSF1_WINDOW}-step disjoint windows")


def load_osuleaf() -> TimeSeriesDataset:
    tr, te = _pooled("OSULeaf")
    ds = _ucr_set("osuleaf", tr, te, "UCR OSULeaf (leaf outlines as 1-D series; aeon)",
                  f"pooled archive, whole series, 80/20 seed {SPLIT_SEED}")
    ds.meta["per_series_znorm_ddof"] = 1
    return ds


def load_basicmotions() -> TimeSeriesDataset:
    tr, te = _archive("BasicMotions")
    return _ucr_set("basicmotions", tr, te, "UEA BasicMotions (aeon)", "the archive's train/test split")


def load_japanesevowels() -> TimeSeriesDataset:
    tr, te = _pooled("JapaneseVowels", "JapaneseVowels_eq")
    return _ucr_set("japanesevowels", tr, te, "UEA JapaneseVowels, equal-length version (aeon)",
                    f"pooled archive, whole utterances, 80/20 seed {SPLIT_SEED}")


SUITE: dict[str, Callable[[], TimeSeriesDataset]] = {
    "ecg": load_embedded_ecg,
    "italypower": load_italypower,
    "gunpoint": load_gunpoint,
    "acsf1": load_acsf1,
    "osuleaf": load_osuleaf,
    "basicmotions": load_basicmotions,
    "japanesevowels": load_japanesevowels,
    "sines": load_sines,
}


def load_suite_dataset(name: str) -> TimeSeriesDataset:
    """One suite dataset by name; :class:`SuiteDataMissing` (one line, naming the extra) if absent."""
    if name not in SUITE:
        raise ValueError(f"unknown suite dataset {name!r}; choose from {list(SUITE)}")
    return SUITE[name]()
