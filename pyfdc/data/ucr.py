"""Readers for the UCR/UEA archive formats, so users can point pyfdc at their own copies.

* ``.ts`` (the sktime/aeon format, univariate and multivariate): ``#`` (or ``%``) comment lines, ``@key value``
  header lines (``@univariate``, ``@dimensions``, ``@equalLength``, ``@seriesLength``,
  ``@classLabel``, ``@timeStamps``, ...), then ``@data`` and one series per line: the channels
  separated by ``:``, each a comma-separated list of values, and the class label last when
  ``@classLabel true``. ``?`` marks a missing value.
* ``.tsv`` / ``.txt`` (the UCR 2018 archive and its older release, univariate): one series per line,
  the class label first, then the values, separated by tabs, commas or spaces. ``NaN`` pads
  variable-length series.

Both return ``(S, N, M)`` float64 arrays and the labels as strings. Series must have equal lengths
and no missing values (pyfdc's models need a fixed N): anything else is a one-line ``ValueError``
naming the file and line. :func:`archive_pair` finds ``NAME_TEST.ext`` next to ``NAME_TRAIN.ext``,
the archive's own train/test split.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["UCR_SUFFIXES", "read_ts", "read_ucr_text", "read_ucr", "archive_pair"]

UCR_SUFFIXES = (".ts", ".tsv", ".txt")
_SEP = re.compile(r"[\t, ]+")


def _fail(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def _number(cell: str, path: Path, lineno: int) -> float:
    cell = cell.strip()
    if cell in ("?", "") or cell.lower() == "nan":
        raise _fail(path, f"line {lineno}: missing value {cell or '(empty)'!r}; pyfdc needs complete, "
                          "equal-length series (use the archive's equal-length version or fill the gaps)")
    try:
        return float(cell)
    except ValueError:
        raise _fail(path, f"line {lineno}: expected a number, got {cell[:30]!r}") from None


def _lines(path: Path) -> list[str]:
    """The file's lines (a UTF-8 byte-order mark dropped); a one-line error for other bytes."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise _fail(path, f"is not a UTF-8 text {path.suffix} file") from None


def _stack(rows: list[np.ndarray], starts: list[int], path: Path) -> np.ndarray:
    if not rows:
        raise _fail(path, "holds no series")
    lengths = {r.shape[0] for r in rows}
    if len(lengths) > 1:
        odd = next(i for i, r in enumerate(rows) if r.shape[0] != rows[0].shape[0])
        raise _fail(path, f"series have unequal lengths ({min(lengths)}..{max(lengths)}; line {starts[odd]} has "
                          f"{rows[odd].shape[0]} steps, line {starts[0]} {rows[0].shape[0]}): pyfdc needs equal lengths")
    return np.stack(rows)


def read_ts(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """A ``.ts`` file -> ``(x (S, N, M) float64, labels)``; labels are ``""`` without ``@classLabel true``."""
    p = Path(path)
    lines = _lines(p)
    header: dict[str, str] = {}
    data_at = None
    for lineno, line in enumerate(lines, start=1):
        s = line.strip()
        if not s or s.startswith(("#", "%")):
            continue
        if not s.startswith("@"):
            raise _fail(p, f"line {lineno}: expected a '@key value' header line before @data, got {s[:30]!r}")
        key, _, value = s[1:].partition(" ")
        if key.lower() == "data":
            data_at = lineno
            break
        header[key.lower()] = value.strip()
    if data_at is None:
        raise _fail(p, "has no @data line: not a .ts file")
    if header.get("timestamps", "false").lower() == "true":
        raise _fail(p, "uses @timeStamps true, which pyfdc does not read; export the values without time stamps")
    labelled = header.get("classlabel", "false").split(" ")[0].lower() == "true" or "targetlabel" in header
    rows, labels, starts = [], [], []
    for lineno, line in enumerate(lines[data_at:], start=data_at + 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        fields = s.split(":")
        if labelled:
            if len(fields) < 2:
                raise _fail(p, f"line {lineno}: expected channels and a class label separated by ':'")
            labels.append(fields[-1].strip())
            fields = fields[:-1]
        else:
            labels.append("")
        chans = [[_number(c, p, lineno) for c in f.split(",")] for f in fields]
        if len({len(c) for c in chans}) > 1:
            raise _fail(p, f"line {lineno}: channels have unequal lengths {sorted({len(c) for c in chans})}")
        if rows and len(chans) != rows[0].shape[1]:
            raise _fail(p, f"line {lineno} has {len(chans)} channels but earlier lines have {rows[0].shape[1]}")
        rows.append(np.asarray(chans, dtype=np.float64).T)     # (N, M)
        starts.append(lineno)
    x = _stack(rows, starts, p)
    dims = header.get("dimensions")
    if dims is not None and dims.isdigit() and int(dims) != x.shape[2]:
        raise _fail(p, f"header says @dimensions {dims} but the series have {x.shape[2]} channels")
    return x, labels


def read_ucr_text(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """A UCR ``.tsv``/``.txt`` file (label first, then the values) -> ``(x (S, N, 1) float64, labels)``."""
    p = Path(path)
    lines = _lines(p)
    rows, labels, starts = [], [], []
    for lineno, line in enumerate(lines, start=1):
        cells = [c for c in _SEP.split(line.strip()) if c]
        if not cells:
            continue
        if len(cells) < 3:
            raise _fail(p, f"line {lineno}: expected a class label and at least 2 values, got {len(cells)} field(s)")
        labels.append(cells[0])
        rows.append(np.asarray([_number(c, p, lineno) for c in cells[1:]], dtype=np.float64)[:, None])
        starts.append(lineno)
    return _stack(rows, starts, p), labels


def read_ucr(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Dispatch on the suffix: ``.ts`` -> :func:`read_ts`, ``.tsv``/``.txt`` -> :func:`read_ucr_text`."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in UCR_SUFFIXES:
        raise _fail(p, f"not a UCR/UEA file (expected one of {UCR_SUFFIXES})")
    return read_ts(p) if suffix == ".ts" else read_ucr_text(p)


def archive_pair(path: str | Path) -> Path | None:
    """``NAME_TEST.ext`` beside ``NAME_TRAIN.ext`` (the archive's held-out split), or ``None``."""
    p = Path(path)
    m = re.fullmatch(r"(?P<stem>.*)_TRAIN", p.stem, flags=re.IGNORECASE)
    if m is None:
        return None
    for test_name in ("TEST", "test", "Test"):
        cand = p.with_name(f"{m['stem']}_{test_name}{p.suffix}")
        if cand.is_file():
            return cand
    return None
