"""Property tests of the file loaders: any bytes or array give a clean one-line error or a correct load."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyfdc.data import load_series

CLEAN = (ValueError, FileNotFoundError)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load(name: str, data: bytes | str, **kw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        return load_series(path, **kw)


def _clean(exc: BaseException) -> None:
    assert isinstance(exc, CLEAN), f"{type(exc).__name__}: {exc}"
    assert "\n" not in str(exc) and str(exc)


cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr), st.integers().map(str),
                 st.sampled_from(["", " ", "a", '"1"', "1e400", "nan", "?", ";", "\t", "\ufeff1"]))


@SETTINGS
@given(st.lists(st.lists(cell, min_size=0, max_size=6), min_size=0, max_size=8))
def test_csv_text(rows: list[list[str]]) -> None:
    text = "\n".join(",".join(r) for r in rows)
    try:
        ds = _load("x.csv", text)
    except Exception as exc:  # noqa: BLE001 - the property: only clean errors
        _clean(exc)
        return
    assert np.isfinite(ds.train).all() and ds.train.ndim == 3 and len(ds.train) >= 2


@SETTINGS
@given(st.text(max_size=300))
def test_ts_text(text: str) -> None:
    try:
        ds = _load("x.ts", text)
    except Exception as exc:  # noqa: BLE001
        _clean(exc)
        return
    assert np.isfinite(ds.train).all()


@SETTINGS
@given(hnp.arrays(dtype=st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.complex64]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=5),
                  elements=None))
@example(1e9 + np.random.default_rng(0).random((5, 4)))  # float32 would round the signal away: stays float64
def test_npy_arrays(arr: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, arr)
        try:
            ds = load_series(path)
        except Exception as exc:  # noqa: BLE001
            _clean(exc)
            return
    flat = np.asarray(arr, dtype=np.float64).reshape(len(arr), arr.shape[1], -1)
    parts = (flat[:len(ds.train)], flat[len(ds.train):])
    for got, want in zip((ds.train, ds.test), parts):
        assert np.isfinite(got).all() and got.dtype in (np.float32, np.float64)
        if got.dtype == np.float64:  # only wide input whose signal float32 would round away stays float64
            assert arr.dtype in (np.float64, np.int64)
            spread = want.reshape(-1, want.shape[-1]).std(0)
            lost = np.abs(want.astype(np.float32).astype(np.float64) - want).reshape(-1, want.shape[-1]).max(0)
            assert (lost > 0).any() and ((spread == 0) | (lost > 1e-6 * spread)).any()
        np.testing.assert_allclose(got, want.astype(got.dtype))


@SETTINGS
@given(st.binary(max_size=200))
@pytest.mark.parametrize("name", ["x.npy", "x.npz", "x.csv", "x.ts", "x.tsv"])
def test_arbitrary_bytes(name: str, data: bytes) -> None:
    try:
        _load(name, data)
    except Exception as exc:  # noqa: BLE001
        _clean(exc)
