"""The embedded default dataset: MIT-BIH record 208 heartbeats (see ATTRIBUTION.md)."""
from __future__ import annotations

import json
from importlib import resources

import numpy as np

from .dataset import TimeSeriesDataset

ECG_FILE = "ecg_mitbih208.npz"


def load_embedded_ecg() -> TimeSeriesDataset:
    """465 beats of 187 samples at 125 Hz, M = 1, in [0, 1]; train = first 240 s, test = last 60 s.

    Built by ``tools/make_ecg_dataset.py`` (Kachuee et al. 2018 beat cutting). ``meta`` also holds
    each beat's start sample in the 125 Hz record (``train_start``/``test_start``) and unpadded length.
    """
    ref = resources.files("pyfdc.data").joinpath(ECG_FILE)
    if not ref.is_file():
        raise FileNotFoundError(
            f"embedded dataset {ECG_FILE} is missing from the pyfdc package; reinstall pyfdc or regenerate it "
            "with tools/make_ecg_dataset.py"
        )
    with ref.open("rb") as fh, np.load(fh) as f:
        meta = json.loads(str(f["meta"]))
        for key in ("train_start", "test_start", "train_length", "test_length"):
            meta[key] = f[key].tolist()
        return TimeSeriesDataset(name="ecg", train=f["train"], test=f["test"], meta=meta)
