"""Loaders for the paper's datasets (App. B.1) from files the user downloads, plus ``load_dataset``.

Every loader reads local files under ``root`` (default: ``$PYFDC_DATA`` or ``./data``), looking in
``root/`` and then ``root/<name>/``. Missing files raise FileNotFoundError naming them and their source.
Datasets without an official split are split 80/20 with a fixed seed (42) over series.
"""
from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .dataset import TimeSeriesDataset
from .embedded import load_embedded_ecg
from .own import _read_csv
from .sines import load_sines

SPLIT_SEED = 42
TRAIN_FRACTION = 0.8

SOURCES = {
    "ecg-kaggle": "Kaggle 'ECG Heartbeat Categorization Dataset' (shayanfazeli/heartbeat)",
    "nasdaq2019": "Kaggle 'Stock Market Dataset' (jacksoncrow/stock-market-dataset), folder stocks/",
    "nasa": "Kaggle 'NASA Battery Dataset' (patrickfleith/nasa-battery-dataset), folder cleaned_dataset/",
    "us-droughts": "Kaggle 'Predict droughts using weather and soil data' (cdminix/us-drought-meteorological-data)",
}


def _root(root: str | os.PathLike[str] | None) -> Path:
    return Path(root) if root is not None else Path(os.environ.get("PYFDC_DATA", "data"))


def _locate(root: Path, name: str, rel: str, source: str, *, is_dir: bool = False) -> Path:
    """First of ``root/rel``, ``root/name/rel`` that exists, else FileNotFoundError."""
    for cand in (root / rel, root / name / rel):
        if (cand.is_dir() if is_dir else cand.is_file()):
            return cand
    raise FileNotFoundError(
        f"dataset {name!r}: expected {'folder' if is_dir else 'file'} {rel!r} in {root} or {root / name}; "
        f"download it from {source} and pass its folder (CLI: --data-root DIR; Python: root=DIR)"
    )


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Name the file in any decoding / CSV / number error raised while reading it (one line)."""
    try:
        yield
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text CSV file") from None
    except (csv.Error, ValueError) as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: {exc}") from None


def _split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seeded 80/20 split over the first axis."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    if len(x) < 2:
        raise ValueError(f"need at least 2 series to split into train and test, got {len(x)}")
    n_train = min(max(int(round(TRAIN_FRACTION * len(x))), 1), len(x) - 1)
    return x[np.sort(perm[:n_train])], x[np.sort(perm[n_train:])]


# --- ECG (Kaggle heartbeat CSVs) ------------------------------------------------------------------

def load_ecg_kaggle(root: str | os.PathLike[str] | None = None) -> TimeSeriesDataset:
    """``mitbih_train.csv`` / ``mitbih_test.csv``: header-less rows of 187 samples + a class label.

    No preprocessing (App. B.1). Returns N = 187, M = 1; labels in ``meta['train_labels']``.
    """
    base = _root(root)
    parts = {}
    for split in ("train", "test"):
        path = _locate(base, "ecg-kaggle", f"mitbih_{split}.csv", SOURCES["ecg-kaggle"])
        rows = _read_csv(path, channels=1)[:, :, 0]       # errors name the file, line and column
        if rows.shape[1] != 188:
            raise ValueError(f"{path}: expected 188 columns (187 samples + label), got {rows.shape[1]}")
        parts[split] = rows
    return TimeSeriesDataset(
        name="ecg-kaggle",
        train=parts["train"][:, :187, None],
        test=parts["test"][:, :187, None],
        meta={"fs": 125, "source": SOURCES["ecg-kaggle"], "split": "official mitbih train/test",
              "train_labels": parts["train"][:, 187].astype(int).tolist(),
              "test_labels": parts["test"][:, 187].astype(int).tolist()},
    )


# --- NASDAQ-2019 ----------------------------------------------------------------------------------

NASDAQ_FEATURES = ("Open", "High", "Low", "Close", "Volume")


def load_nasdaq2019(root: str | os.PathLike[str] | None = None) -> TimeSeriesDataset:
    """Per-ticker CSVs ``stocks/<TICKER>.csv`` (Date,Open,High,Low,Close,Adj Close,Volume).

    Keeps 2019-01-01 <= Date < 2020-01-01; drops tickers missing any trading day of that window (the
    union of all tickers' dates) or with an empty/non-numeric value. Returns one series per ticker,
    N = trading days (252 for the real data), M = 5 (Open, High, Low, Close, Volume).
    """
    folder = _locate(_root(root), "nasdaq2019", "stocks", SOURCES["nasdaq2019"], is_dir=True)
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"dataset 'nasdaq2019': no *.csv in {folder}; download {SOURCES['nasdaq2019']}")
    tables: dict[str, dict[str, list[float] | None]] = {}
    for path in files:
        with _reading(path), open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("Date", *NASDAQ_FEATURES) if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: missing columns {missing}; expected Date,Open,High,Low,Close,Adj Close,Volume")
            rows: dict[str, list[float] | None] = {}
            for row in reader:
                if "2019-01-01" <= row["Date"] < "2020-01-01":
                    try:
                        rows[row["Date"]] = [float(row[c]) for c in NASDAQ_FEATURES]
                    except ValueError:  # empty or 'null' cell: this ticker has a gap
                        rows[row["Date"]] = None
        tables[path.stem] = rows
    calendar = sorted(set().union(*(t.keys() for t in tables.values())))
    keep = [k for k, t in tables.items()
            if len(t) == len(calendar) and all(v is not None and np.isfinite(v).all() for v in t.values())]
    if len(keep) < 2:
        raise ValueError(f"nasdaq2019: only {len(keep)} ticker(s) active over the whole 2019 window in {folder}")
    x = np.stack([[tables[k][d] for d in calendar] for k in keep])
    train, test = _split(x)
    return TimeSeriesDataset("nasdaq2019", train, test, meta={
        "source": SOURCES["nasdaq2019"], "features": list(NASDAQ_FEATURES), "tickers": keep,
        "start": calendar[0], "end": calendar[-1], "split": f"random 80/20, seed {SPLIT_SEED}"})


# --- NASA battery ---------------------------------------------------------------------------------

NASA_FEATURES = {
    "charge": ("Voltage_measured", "Current_measured", "Temperature_measured", "Current_charge", "Voltage_charge"),
    "discharge": ("Voltage_measured", "Current_measured", "Temperature_measured", "Current_load", "Voltage_load"),
}
NASA_BIN_SECONDS = {"charge": 10.0, "discharge": 15.0}


def _bin_mean(time: np.ndarray, values: np.ndarray, width: float) -> np.ndarray:
    """Mean of ``values`` (n, M) in consecutive time bins of ``width`` seconds; empty bins dropped -> (bins, M)."""
    idx = np.floor((time - time[0]) / width).astype(np.int64)
    _, inverse, counts = np.unique(idx, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), values.shape[1]))
    np.add.at(sums, inverse, values)
    return sums / counts[:, None]


def load_nasa(kind: str, root: str | os.PathLike[str] | None = None) -> TimeSeriesDataset:
    """NASA battery cycles of ``kind`` in {"charge", "discharge"} from the Kaggle cleaned CSV export.

    Expects ``metadata.csv`` (columns include ``type`` and ``filename``) and ``data/<filename>``, one CSV
    per cycle with the 5 feature columns above and ``Time`` (s). Each cycle is binned in time (10 s
    charge, 15 s discharge; App. B.1) and averaged per bin. Cycles shorter than half the median bin
    count (aborted runs) are dropped; the rest are cut to the shortest remaining length N. M = 5.
    """
    if kind not in NASA_FEATURES:
        raise ValueError(f"kind must be 'charge' or 'discharge', got {kind!r}")
    name = f"nasa-{kind}"
    base = _root(root)
    meta_path = _locate(base, name, "metadata.csv", SOURCES["nasa"])
    features, width = NASA_FEATURES[kind], NASA_BIN_SECONDS[kind]
    cycles: list[np.ndarray] = []
    with _reading(meta_path), open(meta_path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("type", "").strip() != kind:
                continue
            path = meta_path.parent / "data" / row["filename"]
            if not path.is_file():
                raise FileNotFoundError(f"{name}: {meta_path} lists {row['filename']} but {path} is missing")
            with _reading(path), open(path, newline="", encoding="utf-8") as cf:
                table = list(csv.DictReader(cf))
            if not table:
                continue
            try:
                time = np.array([float(r["Time"]) for r in table])
                vals = np.array([[float(r[c]) for c in features] for r in table])
            except KeyError as err:
                raise ValueError(f"{path}: missing column {err}; expected {', '.join(features)}, Time") from None
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
            if not (np.isfinite(vals).all() and np.isfinite(time).all()):
                continue  # a cycle with gaps is dropped, as for the other datasets
            cycles.append(_bin_mean(time, vals, width))
    if len(cycles) < 2:
        raise ValueError(f"{name}: found {len(cycles)} usable {kind} cycle(s) under {meta_path.parent}")
    lengths = np.array([len(c) for c in cycles])
    kept = [c for c in cycles if len(c) >= 0.5 * np.median(lengths)]
    n = min(len(c) for c in kept)
    x = np.stack([c[:n] for c in kept])
    train, test = _split(x)
    return TimeSeriesDataset(name, train, test, meta={
        "source": SOURCES["nasa"], "features": list(features), "bin_seconds": width,
        "cycles_found": len(cycles), "cycles_kept": len(kept), "split": f"random 80/20, seed {SPLIT_SEED}"})


# --- US-Droughts ----------------------------------------------------------------------------------

def load_us_droughts(root: str | os.PathLike[str] | None = None) -> TimeSeriesDataset:
    """``train_timeseries.csv`` (fips,date,<weather columns>...,score): one series per county (fips).

    Keeps 2011-01-01 <= date < 2012-01-01 (N = 365) and drops every column with a missing value in
    that window (e.g. the weekly ``score``). Counties missing a day are dropped.
    """
    path = _locate(_root(root), "us-droughts", "train_timeseries.csv", SOURCES["us-droughts"])
    with _reading(path), open(path, newline="", encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
        if header[:2] != ["fips", "date"]:
            raise ValueError(f"{path}: expected the header to start with 'fips,date', got {header[:2]}")
        cols = header[2:]
        by_fips: dict[str, dict[str, np.ndarray]] = {}
        for line in fh:
            fips, date, rest = line.rstrip("\n").split(",", 2)
            day = date[:10]
            if "2011-01-01" <= day < "2012-01-01":
                vals = np.array([float(v) if v.strip() else np.nan for v in rest.split(",")], dtype=np.float64)
                if len(vals) != len(cols):
                    raise ValueError(f"{path}: row for fips {fips} on {day} has {len(vals)} values, expected {len(cols)}")
                by_fips.setdefault(fips, {})[day] = vals
    if not by_fips:
        raise ValueError(f"{path}: no rows dated 2011")
    days = sorted(set().union(*(rows.keys() for rows in by_fips.values())))
    keep_fips = [f for f, rows in by_fips.items() if len(rows) == len(days)]
    if len(keep_fips) < 2:
        raise ValueError(f"{path}: only {len(keep_fips)} county series cover every day of 2011")
    raw = np.stack([np.stack([by_fips[f][d] for d in days]) for f in keep_fips])  # (counties, N, columns)
    good = np.isfinite(raw).all(axis=(0, 1))
    if not good.any():
        raise ValueError(f"{path}: every column has missing values in 2011")
    x = raw[:, :, good]
    train, test = _split(x)
    return TimeSeriesDataset("us-droughts", train, test, meta={
        "source": SOURCES["us-droughts"], "features": [c for c, g in zip(cols, good) if g],
        "dropped_columns": [c for c, g in zip(cols, good) if not g], "counties": len(keep_fips),
        "start": days[0], "end": days[-1], "split": f"random 80/20, seed {SPLIT_SEED}"})


# --- registry -------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[[str | os.PathLike[str] | None], TimeSeriesDataset]] = {
    "ecg": lambda root: load_embedded_ecg(),
    "sines": lambda root: load_sines(),
    "ecg-kaggle": load_ecg_kaggle,
    "nasdaq2019": load_nasdaq2019,
    "nasa-charge": lambda root: load_nasa("charge", root),
    "nasa-discharge": lambda root: load_nasa("discharge", root),
    "us-droughts": load_us_droughts,
}


def available_datasets() -> list[str]:
    """Names ``load_dataset`` accepts; ``"ecg"`` is embedded, ``"sines"`` generated, the others read local files."""
    return list(_LOADERS)


def load_dataset(name: str = "ecg", root: str | os.PathLike[str] | None = None) -> TimeSeriesDataset:
    """Load dataset ``name`` (see ``available_datasets()``) as float32 (n, N, M) train/test arrays."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {available_datasets()}")
    return _LOADERS[name](root)
