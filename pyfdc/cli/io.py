"""Shared pieces of the CLI commands: output file names, safe output folders, atomic writers, messages."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


SAMPLES_FILE = "samples.npy"
SAMPLE_INFO_FILE = "sample_info.json"
STATS_FILE = "e2crf_stats.json"
METRICS_FILE = "metrics.json"
CALIBRATION_FILE = "calibration.json"
CALIBRATION_PLOT = "calibration.png"
CALIBRATE_OUTPUTS = (CALIBRATION_FILE, CALIBRATION_PLOT)

# Hidden test/demo override: a tiny network that trains in seconds.
TINY_MODEL = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "rff_dim": 8}


SAMPLE_OUTPUTS = ("samples.npy", "sample_info.json", "e2crf_stats.json")
EVALUATE_OUTPUTS = ("metrics.json", "spectral_density.png", "sample_grid.png", "e2crf_stats.png")


def _write_json(path: Path, obj: Any) -> None:
    from pyfdc._io import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def _save_npy(path: Path, arr: Any) -> None:
    import numpy as np

    from pyfdc._io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        arr = np.asarray(arr)  # float64 stays float64 (data float32 cannot hold); everything else float32
        np.save(fh, arr if arr.dtype == np.float64 else np.asarray(arr, dtype=np.float32))


_QUIET = False  # set on ranks other than 0 of a torchrun job: one process reports


def set_quiet(quiet: bool) -> None:
    """Silence :func:`_echo` (ranks other than 0 of a torchrun job)."""
    global _QUIET
    _QUIET = quiet


def _echo(msg: str) -> None:
    if not _QUIET:
        print(msg, file=sys.stderr, flush=True)
