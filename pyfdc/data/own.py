"""The user's own series from one file: ``.npy``, ``.npz`` or ``.csv`` -> :class:`TimeSeriesDataset`.

* ``.npy``: one array ``(S, N)`` (one channel) or ``(S, N, M)``; split here.
* ``.npz``: arrays ``train`` and ``test`` (already split, kept as they are), or one array (any name)
  split here.
* ``.csv``: one series per line, comma-separated numbers, no header. With ``channels = M`` a line
  holds the M channels one after another (``N·M`` values: channel 0's N values, then channel 1's…).
  Long format with ``length = N``: one time step per line (``M`` values, one per channel), and every
  ``N`` consecutive lines form one series.
* ``.parquet`` (needs ``pyarrow``): numeric columns read as the rows of a CSV would be — a series per
  row (``channels`` blocks of columns), or long format with ``length``.
* ``.ts`` / ``.tsv`` / ``.txt``: the UCR/UEA archive formats (:mod:`pyfdc.data.ucr`; labels are
  dropped). Given ``NAME_TRAIN.ext`` with ``NAME_TEST.ext`` beside it, the archive's own split is
  kept (both files' SHA-256 are recorded); otherwise the file is split here.

Splits: ``time`` (the last ``test_fraction`` of the series, in file order, are held out — right for
series cut from one recording) or ``random`` (seeded). The dataset's ``meta`` records the file's
absolute path, SHA-256, split and arguments, so a checkpoint trained on it can find its held-out
split again (:func:`reload_from_meta`) and refuses a file that changed since.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import TimeSeriesDataset
from .ucr import UCR_SUFFIXES, archive_pair, read_ucr

SPLITS = ("time", "random")
SUFFIXES = (".npy", ".npz", ".csv", ".parquet", *UCR_SUFFIXES)


def _fail(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def _csv_hint(line: str, cell: str, last: bool, lineno: int) -> str:
    """Why a CSV cell may not parse: another separator, a trailing comma, a header row."""
    for sep, name in ((";", "';'"), ("\t", "tabs")):
        if sep in line:
            return f" (this line is separated by {name}; pyfdc reads comma-separated values)"
    if last and not cell:
        return " (a trailing comma? remove it)"
    return " (a header row? remove it)" if lineno == 1 else ""


def _read_csv(path: Path, channels: int, length: int | None = None) -> np.ndarray:
    rows: list[list[float]] = []
    try:
        text = path.read_text(encoding="utf-8-sig")     # -sig: Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError:
        raise _fail(path, "is not a text CSV file (undecodable bytes)") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue                                   # blank lines (e.g. a trailing one) are skipped
        row = []
        cells = line.split(",")
        for col, cell in enumerate(cells, start=1):
            cell = cell.strip()
            if len(cell) >= 2 and cell[0] == cell[-1] == '"':
                cell = cell[1:-1].strip()              # a quoted number is still a number
            try:
                row.append(float(cell))
            except ValueError:
                raise _fail(path, f"line {lineno}, column {col}: expected a number, got {cell[:30]!r}"
                                  + _csv_hint(line, cell, col == len(cells), lineno)) from None
        if rows and len(row) != len(rows[0]):
            raise _fail(path, f"line {lineno} has {len(row)} values but earlier lines have {len(rows[0])}: "
                              "every series must have the same length")
        rows.append(row)
    if not rows:
        raise _fail(path, "holds no series")
    x = np.asarray(rows, dtype=np.float64)
    if length is not None:                             # long format: a time step per line
        if x.shape[1] != channels:
            raise _fail(path, f"long format: lines have {x.shape[1]} values, expected --channels {channels}")
        if len(x) % length:
            raise _fail(path, f"long format: {len(x)} lines are not a whole number of series of --length {length}")
        return x.reshape(len(x) // length, length, channels)
    if x.shape[1] % channels:
        raise _fail(path, f"lines have {x.shape[1]} values, not a multiple of --channels {channels}")
    return x.reshape(len(x), channels, x.shape[1] // channels).transpose(0, 2, 1)


PYARROW_FLOOR = (14, 0, 1)


def _version_tuple(text: str) -> tuple[int, ...]:
    """``"14.0.1"`` -> ``(14, 0, 1)``; stops at the first part that is not a number (``"15.0.0.dev3"``)."""
    out = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def _read_parquet(path: Path, channels: int, length: int | None) -> np.ndarray:
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise _fail(path, "reading .parquet needs pyarrow (pip install 'pyfdc[parquet]')") from None
    if _version_tuple(pyarrow.__version__) < PYARROW_FLOOR:
        raise _fail(path, f"pyarrow {pyarrow.__version__} can run code from crafted Parquet files (CVE-2023-47248); "
                          "pip install 'pyarrow>=14.0.1'")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise _fail(path, f"cannot be read as .parquet: {exc}") from None
    cols = []
    for name, col in zip(table.column_names, table.columns):
        values = np.asarray(col.to_numpy(zero_copy_only=False))
        if values.dtype.kind not in "fiu":
            raise _fail(path, f"column {name!r} is not numeric ({values.dtype})")
        cols.append(values.astype(np.float64))
    x = np.stack(cols, axis=1) if cols else np.zeros((0, 0))
    if length is not None:
        if x.shape[1] != channels or len(x) % length:
            raise _fail(path, f"long format: need {channels} column(s) and a multiple of --length {length} rows, "
                              f"got {x.shape[1]} x {len(x)}")
        return x.reshape(len(x) // length, length, channels)
    if x.shape[1] % channels:
        raise _fail(path, f"{x.shape[1]} columns are not a multiple of --channels {channels}")
    return x.reshape(len(x), channels, x.shape[1] // channels).transpose(0, 2, 1)


def _as_series(x: np.ndarray, path: Path, what: str) -> np.ndarray:
    if x.dtype.kind not in "fiu":
        raise _fail(path, f"{what} must hold numbers, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise _fail(path, f"{what} must have shape (S, N) or (S, N, M), got {list(x.shape)}")
    return x


def _split(x: np.ndarray, split: str, test_fraction: float, seed: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    n_test = int(round(test_fraction * len(x)))
    if n_test < 1 or len(x) - n_test < 2:
        raise _fail(path, f"{len(x)} series cannot be split with test fraction {test_fraction} "
                          "(need >= 2 to train on and >= 1 held out)")
    order = np.arange(len(x)) if split == "time" else np.random.default_rng(seed).permutation(len(x))
    return x[order[:-n_test]], x[order[-n_test:]]


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_series(path: str | os.PathLike[str], *, split: str | None = None, test_fraction: float | None = None,
                channels: int = 1, seed: int = 0, length: int | None = None) -> TimeSeriesDataset:
    """Read one file of series and split it into train / held-out (see the module docstring).

    ``split`` (default ``"time"``) and ``test_fraction`` (default 0.2) split a file that holds one set of
    series; for a file that carries its own split (``.npz`` with ``train``/``test``, a UCR/UEA
    ``_TRAIN``/``_TEST`` pair) giving either is an error, since it could not apply.
    Raises ``ValueError`` naming the file (and line, for CSV) for anything unreadable, and
    ``FileNotFoundError`` for a missing file.
    """
    p = Path(path)
    asked = [name for name, v in (("split", split), ("test_fraction", test_fraction)) if v is not None]
    split = "time" if split is None else split
    test_fraction = 0.2 if test_fraction is None else test_fraction
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be an int >= 1, got {channels!r}")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
        raise ValueError(f"length must be None or an int >= 1, got {length!r}")
    if p.is_dir():
        raise _fail(p, f"is a folder; pass one data file ({', '.join(SUFFIXES)})")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such data file")
    if length is not None and p.suffix.lower() not in (".csv", ".parquet"):
        raise _fail(p, "length (long format) is for .csv and .parquet files only")
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise _fail(p, f"unknown data format {suffix or '(no suffix)'!r}; expected one of {SUFFIXES}")
    presplit = False
    pair = archive_pair(p) if suffix in UCR_SUFFIXES else None
    try:
        if suffix in UCR_SUFFIXES:
            x = read_ucr(p)[0]
            if pair is not None:
                train, test, presplit = x, read_ucr(pair)[0], True
        elif suffix == ".csv":
            x = _read_csv(p, channels, length)
        elif suffix == ".parquet":
            x = _read_parquet(p, channels, length)
        elif suffix == ".npy":
            x = _as_series(np.load(p, allow_pickle=False), p, "the array")
        else:
            with np.load(p, allow_pickle=False) as z:
                names = list(z.files)
                if "train" in names and "test" in names:
                    train, test = (_as_series(z[n], p, f"array {n!r}") for n in ("train", "test"))
                    presplit = True
                elif len(names) == 1:
                    x = _as_series(z[names[0]], p, f"array {names[0]!r}")
                else:
                    raise _fail(p, f"holds arrays {names}; expected 'train' and 'test', or a single array")
    except (OSError, EOFError) as exc:                         # truncated / not an array file
        raise _fail(p, f"cannot be read as {suffix}: {exc}") from None
    except ValueError as exc:
        if str(exc).startswith(str(p)):
            raise
        raise _fail(p, f"cannot be read as {suffix}: {exc}") from None
    if presplit and asked:
        raise _fail(p, f"carries its own train/test split, so {' and '.join(asked)} cannot apply; drop "
                       f"{'it' if len(asked) == 1 else 'them'} (CLI: --split / --test-fraction)")
    if not presplit:
        train, test = _split(x, split, float(test_fraction), seed, p)
    meta: dict[str, Any] = {"source": "file", "path": str(p.resolve()), "sha256": file_sha256(p),
                            "split": "file" if presplit else split,
                            "test_fraction": None if presplit else float(test_fraction),
                            "channels": channels, "seed": seed, "length": length}
    if pair is not None:
        meta.update(split="archive", test_path=str(pair.resolve()), test_sha256=file_sha256(pair))
    try:
        return TimeSeriesDataset(f"file:{p.name}", train, test, meta)
    except ValueError as exc:
        raise _fail(p, str(exc)) from None


def reload_from_meta(meta: dict[str, Any], path: str | os.PathLike[str] | None = None) -> TimeSeriesDataset:
    """The dataset a checkpoint was trained on, from its recorded ``meta`` (optionally from another
    ``path`` holding the same bytes). Refuses a file whose SHA-256 differs from the recorded one."""
    src = Path(path) if path is not None else Path(meta["path"])
    if not src.is_file():
        raise FileNotFoundError(f"{src}: the data file this model was trained on is gone; pass --data FILE")
    digest = file_sha256(src)
    if digest != meta.get("sha256"):
        raise ValueError(f"{src}: its contents differ from the file this model was trained on "
                         f"(SHA-256 {digest[:12]}… vs {str(meta.get('sha256'))[:12]}…); its held-out split "
                         "would not be held out")
    if meta.get("test_sha256") is not None:
        pair = archive_pair(src)
        if pair is None or file_sha256(pair) != meta["test_sha256"]:
            raise ValueError(f"{src}: the archive's _TEST file beside it is gone or differs from the one this "
                             "model was trained with; its held-out split cannot be found")
    own = meta["split"] in SPLITS  # else "file" / "archive": the file carries its split
    return load_series(src, split=meta["split"] if own else None, test_fraction=meta["test_fraction"] if own else None,
                       channels=meta["channels"], seed=meta["seed"], length=meta.get("length"))
