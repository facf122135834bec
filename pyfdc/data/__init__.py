"""Datasets: the embedded MIT-BIH ECG default, loaders for the paper's data, and standardisation."""
from __future__ import annotations

from .dataset import TimeSeriesDataset, check_series
from .embedded import load_embedded_ecg
from .loaders import available_datasets, load_dataset
from .own import load_series, reload_from_meta
from .standardize import Standardizer

__all__ = ["TimeSeriesDataset", "Standardizer", "available_datasets", "load_dataset", "load_embedded_ecg", "check_series",
           "load_series", "reload_from_meta"]
