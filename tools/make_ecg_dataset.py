"""Build ``pyfdc/data/ecg_mitbih208.npz`` (the embedded default dataset) from SciPy 1.13.1's ``ecg.dat``.

Run once, offline after the download:

    pip download --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux2014_x86_64 scipy==1.13.1 -d /tmp/scipy_old
    python tools/make_ecg_dataset.py /tmp/scipy_old/scipy-1.13.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl

(the argument may also be an extracted ``scipy/misc/ecg.dat``). SciPy is only a *source* here: the
package never needs an old SciPy at run time.

Source: MIT-BIH Arrhythmia Database record 208, lead MLII, 360 Hz, the 5-minute excerpt 19:35-24:35
that SciPy 1.10-1.13 ship (PhysioNet, ODC-By 1.0; see ``pyfdc/data/ATTRIBUTION.md``).

Pipeline (mirrors Kachuee et al. 2018, the Kaggle "ECG Heartbeat Categorization" set):
1. decode as SciPy did: ``mV = (uint16 - 1024) / 200``;
2. resample 360 -> 125 Hz (``resample_poly(x, 25, 72)``, 37,500 samples);
3. R-peaks: our detector — 5-15 Hz band-pass, squared derivative, 150 ms moving average, peaks at
   least 250 ms apart above 10% of a robust local envelope, then moved to the signal maximum within
   +-64 ms;
4. cut the record into 30 non-overlapping 10 s windows; min-max normalise each window to [0, 1];
   T = median R-R interval in the window; each beat = the normalised window from its R-peak for
   round(1.2 T) samples, zero-padded (or cut) to 187 samples. Beats that would run past their window's
   end are dropped (so no beat spans two windows);
5. split by time: windows starting before 240 s (the first 80%) are ``train``, the rest ``test``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage, signal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pyfdc._io import atomic_path  # noqa: E402

ECG_DAT_SHA256 = "f20ad3365fb9b7f845d0e5c48b6fe67081377ee466c3a220b7f69f35c8958baf"
FS_IN, FS = 360, 125
BEAT_LEN = 187
WINDOW_S = 10.0
TRAIN_FRACTION = 0.8
OUT = REPO / "pyfdc" / "data" / "ecg_mitbih208.npz"


def read_ecg_dat(source: Path) -> bytes:
    """Bytes of ``ecg.dat`` from a SciPy wheel or the file itself; checks the SHA-256."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as whl:
            data = whl.read("scipy/misc/ecg.dat")
    else:
        data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != ECG_DAT_SHA256:
        raise ValueError(f"source: ecg.dat has sha256 {digest}, expected {ECG_DAT_SHA256} (scipy 1.13.1)")
    return data


def decode_mv(data: bytes) -> np.ndarray:
    """ADC counts -> millivolts exactly as ``scipy.misc.electrocardiogram`` did: (108000,) float64."""
    with np.load(io.BytesIO(data)) as f:
        return (f["ecg"].astype(np.int64) - 1024) / 200.0


def detect_r_peaks(x: np.ndarray, fs: int) -> np.ndarray:
    """R-peak sample indices of a 1-D ECG ``x`` (mV) sampled at ``fs`` Hz, ascending."""
    sos = signal.butter(3, [5.0, 15.0], btype="band", fs=fs, output="sos")
    band = signal.sosfiltfilt(sos, x)
    width = int(round(0.15 * fs))
    energy = np.convolve(np.gradient(band) ** 2, np.ones(width) / width, mode="same")
    # Robust local envelope: the typical QRS energy over ~8 s, so artifacts do not raise the bar elsewhere.
    envelope = ndimage.median_filter(ndimage.maximum_filter1d(energy, size=2 * fs), size=8 * fs)
    peaks, _ = signal.find_peaks(energy, height=0.1 * envelope, distance=int(0.25 * fs))
    half = int(round(0.064 * fs))
    refined = []
    for p in peaks:
        lo = max(p - half, 0)
        refined.append(lo + int(np.argmax(x[lo : p + half + 1])))
    return np.unique(np.asarray(refined, dtype=np.int64))


def cut_beats(x: np.ndarray, peaks: np.ndarray, fs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kachuee-style beats. Returns beats (n, 187) float32 in [0, 1], start index (n,), unpadded length (n,)."""
    win = int(WINDOW_S * fs)
    beats, starts, lengths = [], [], []
    for w0 in range(0, len(x) - win + 1, win):
        seg = x[w0 : w0 + win]
        lo, hi = seg.min(), seg.max()
        norm = (seg - lo) / (hi - lo)
        rs = peaks[(peaks >= w0) & (peaks < w0 + win)] - w0
        if len(rs) < 2:
            continue
        length = int(round(1.2 * np.median(np.diff(rs))))
        for r in rs:
            if r + length > win:
                continue
            beat = np.zeros(BEAT_LEN, dtype=np.float32)
            take = min(length, BEAT_LEN)
            beat[:take] = norm[r : r + take]
            beats.append(beat)
            starts.append(w0 + r)
            lengths.append(take)
    return np.stack(beats), np.asarray(starts, np.int64), np.asarray(lengths, np.int64)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="scipy-1.13.1 wheel or its scipy/misc/ecg.dat")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    mv = decode_mv(read_ecg_dat(args.source))
    x = signal.resample_poly(mv, 25, 72)  # 360 Hz * 25/72 = 125 Hz
    peaks = detect_r_peaks(x, FS)
    beats, starts, lengths = cut_beats(x, peaks, FS)
    split = int(TRAIN_FRACTION * len(x))  # 30,000 samples = 240 s, a window boundary
    train = starts < split
    assert np.all(starts[train] + lengths[train] <= split), "a train beat crosses the split"
    meta = {
        "name": "ecg",
        "source": "MIT-BIH Arrhythmia Database record 208, lead MLII, excerpt 19:35-24:35 (scipy 1.13.1 scipy/misc/ecg.dat)",
        "source_sha256": ECG_DAT_SHA256,
        "license": "ODC-By 1.0 (PhysioNet); see ATTRIBUTION.md",
        "fs": FS,
        "fs_original": FS_IN,
        "units": "min-max normalised to [0, 1] per 10 s window (Kachuee et al. 2018), zero-padded after 1.2 median RR",
        "beat_length": BEAT_LEN,
        "split_index": split,
        "split_time_s": split / FS,
        "n_r_peaks": int(len(peaks)),
        "generator": "tools/make_ecg_dataset.py",
    }
    with atomic_path(args.out) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            train=beats[train][:, :, None],
            test=beats[~train][:, :, None],
            train_start=starts[train],
            test_start=starts[~train],
            train_length=lengths[train],
            test_length=lengths[~train],
            signal_mv=x.astype(np.float32),
            r_peaks=peaks,
            meta=np.asarray(json.dumps(meta)),
        )
    print(f"{len(peaks)} R-peaks, {len(beats)} beats: train {int(train.sum())}, test {int((~train).sum())}; "
          f"wrote {args.out} ({args.out.stat().st_size / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
