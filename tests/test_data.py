"""pyfdc.data: embedded ECG, file loaders on generated fixtures in the real formats, Standardizer."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pyfdc.data import Standardizer, TimeSeriesDataset, available_datasets, load_dataset


# --- embedded ECG ---------------------------------------------------------------------------------

def test_embedded_ecg_shape_range_and_time_split() -> None:
    ds = load_dataset()
    assert ds.name == "ecg" and ds.train.dtype == np.float32 and ds.test.dtype == np.float32
    assert ds.train.shape[1:] == (187, 1) and ds.test.shape[1:] == (187, 1)
    assert len(ds.train) > 300 and len(ds.test) > 60
    assert ds.train.min() >= 0.0 and ds.train.max() <= 1.0
    assert ds.meta["fs"] == 125
    # Split by time: every train beat ends before the split, every test beat starts after it.
    split = ds.meta["split_index"]
    ends = np.array(ds.meta["train_start"]) + np.array(ds.meta["train_length"])
    assert ends.max() <= split <= min(ds.meta["test_start"])
    # Beats start at an R-peak: sample 0 is the window maximum region, and padding is exact zeros.
    lengths = np.array(ds.meta["train_length"])
    assert all(np.all(b[n:, 0] == 0) for b, n in zip(ds.train, lengths))
    json.dumps({k: v for k, v in ds.meta.items()})  # meta is JSON-safe


def test_available_and_unknown() -> None:
    names = available_datasets()
    assert names[0] == "ecg" and {"ecg-kaggle", "nasdaq2019", "nasa-charge", "nasa-discharge", "us-droughts"} <= set(names)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("nope")


@pytest.mark.parametrize("name,expected", [
    ("ecg-kaggle", "mitbih_train.csv"), ("nasdaq2019", "stocks"), ("nasa-charge", "metadata.csv"),
    ("nasa-discharge", "metadata.csv"), ("us-droughts", "train_timeseries.csv"),
])
def test_missing_files_name_what_and_where(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(FileNotFoundError, match=expected) as err:
        load_dataset(name, root=tmp_path)
    assert "kaggle" in str(err.value).lower()


def test_dataset_rejects_nan_and_bad_shapes() -> None:
    x = np.zeros((4, 8, 2), np.float32)
    bad = x.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN/Inf"):
        TimeSeriesDataset("t", bad, x)
    with pytest.raises(ValueError, match="shape"):
        TimeSeriesDataset("t", x[0], x)
    with pytest.raises(ValueError, match="differs"):
        TimeSeriesDataset("t", x, x[:, :4])


# --- fixtures in the real formats -----------------------------------------------------------------

def test_ecg_kaggle(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        rows = np.hstack([rng.random((n, 187)), rng.integers(0, 5, (n, 1))])
        np.savetxt(tmp_path / f"mitbih_{split}.csv", rows, delimiter=",", fmt="%.18e")
    ds = load_dataset("ecg-kaggle", root=tmp_path)
    assert ds.train.shape == (6, 187, 1) and ds.test.shape == (3, 187, 1)
    assert len(ds.meta["train_labels"]) == 6


def _write_ticker(path: Path, dates: list[str], skip: set[str] = frozenset(), null: str | None = None) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"])
        for i, d in enumerate(dates):
            if d in skip:
                continue
            close = "" if d == null else f"{10 + i:.2f}"
            w.writerow([d, 10 + i, 11 + i, 9 + i, close, 10 + i, 1000 * i])


def test_nasdaq2019_window_and_dropping(tmp_path: Path) -> None:
    stocks = tmp_path / "nasdaq2019" / "stocks"  # also found under root/<name>/
    stocks.mkdir(parents=True)
    days = ["2018-12-31", "2019-01-02", "2019-01-03", "2019-06-28", "2019-12-31", "2020-01-02"]
    for t in ("AAA", "BBB", "CCC"):
        _write_ticker(stocks / f"{t}.csv", days)
    _write_ticker(stocks / "GAP.csv", days, skip={"2019-06-28"})          # missing a trading day
    _write_ticker(stocks / "NUL.csv", days, null="2019-01-03")            # empty Close
    _write_ticker(stocks / "NEW.csv", days, skip={"2019-01-02", "2019-01-03"})  # listed mid-year
    ds = load_dataset("nasdaq2019", root=tmp_path)
    assert sorted(ds.meta["tickers"]) == ["AAA", "BBB", "CCC"]
    assert ds.train.shape[1:] == (4, 5) and len(ds.train) + len(ds.test) == 3
    assert ds.meta["start"] == "2019-01-02" and ds.meta["end"] == "2019-12-31"
    np.testing.assert_array_equal(ds.train[0, :, 0], [11, 12, 13, 14])  # Open of rows 1..4


def _nasa_fixture(root: Path) -> None:
    (root / "data").mkdir(parents=True)
    meta_rows = []
    for k, (kind, seconds) in enumerate([("charge", 100), ("charge", 120), ("charge", 30), ("discharge", 150),
                                         ("discharge", 165), ("impedance", 10), ("charge", 100)]):
        fname = f"{k:05d}.csv"
        meta_rows.append({"type": kind, "start_time": "[2008. 4. 2. 13. 8. 17.921]", "ambient_temperature": 24,
                          "battery_id": "B0005", "test_id": k, "uid": k + 1, "filename": fname})
        last = "Current_charge,Voltage_charge" if kind != "discharge" else "Current_load,Voltage_load"
        with open(root / "data" / fname, "w") as fh:
            fh.write(f"Voltage_measured,Current_measured,Temperature_measured,{last},Time\n")
            for s in range(0, seconds, 5):  # one measurement every 5 s
                fh.write(f"{3 + s / 1000},{1.5},{24 + s / 100},{1.5},{s / 10},{float(s)}\n")
    with open(root / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(meta_rows[0]))
        w.writeheader()
        w.writerows(meta_rows)


def test_nasa_binning(tmp_path: Path) -> None:
    _nasa_fixture(tmp_path)
    ch = load_dataset("nasa-charge", root=tmp_path)
    # 4 charge cycles; the 30 s one is an aborted run (< half the median length) and is dropped;
    # 10 s bins of 5 s samples -> 10 bins for 100 s, cut to the shortest kept cycle.
    assert ch.meta["cycles_found"] == 4 and ch.meta["cycles_kept"] == 3
    assert ch.train.shape[1:] == (10, 5) and len(ch.train) + len(ch.test) == 3
    # Bin 0 holds t = 0 and 5 s: the Time-derived last feature is the mean, 0.25 s / 1.
    np.testing.assert_allclose(ch.train[0, 0, 4], 0.25)
    dis = load_dataset("nasa-discharge", root=tmp_path)
    assert dis.train.shape[1:] == (10, 5)  # 15 s bins: 150 s -> 10 bins
    np.testing.assert_allclose(dis.train[0, 0, 4], 0.5)  # mean of t = 0, 5, 10 s, divided by 10


def test_us_droughts(tmp_path: Path) -> None:
    import datetime as dt
    days = [dt.date(2010, 12, 30) + dt.timedelta(days=i) for i in range(368)]
    with open(tmp_path / "train_timeseries.csv", "w") as fh:
        fh.write("fips,date,PRECTOT,PS,T2M,score\n")
        for fips in (1001, 1003, 1005, 1007):
            for i, d in enumerate(days):
                if fips == 1007 and i == 100:
                    continue  # a county missing a day is dropped
                score = f"{i % 5}" if d.weekday() == 1 else ""  # weekly score -> missing values
                t2m = "" if fips == 1005 and i == 0 else f"{i}"  # missing, but outside 2011
                fh.write(f"{fips},{d.isoformat()},{fips / 1000},{i / 10},{t2m},{score}\n")
    ds = load_dataset("us-droughts", root=tmp_path)
    assert ds.meta["features"] == ["PRECTOT", "PS", "T2M"] and ds.meta["dropped_columns"] == ["score"]
    assert ds.meta["counties"] == 3 and ds.train.shape[1:] == (365, 3)
    assert ds.meta["start"] == "2011-01-01" and ds.meta["end"] == "2011-12-31"
    np.testing.assert_array_equal(ds.train[0, :3, 2], [2, 3, 4])  # 2011-01-01 is day index 2


# --- Standardizer ---------------------------------------------------------------------------------

def test_standardizer_numpy_and_torch_roundtrip() -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(50, 20, 3)) * [1.0, 5.0, 0.1] + [0.0, -3.0, 7.0]).astype(np.float32)
    st = Standardizer.fit(x)
    z = st.transform(x)
    flat = z.reshape(-1, 3)
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-5)  # float32 rounding of 1,000 values
    np.testing.assert_allclose(flat.std(0), 1.0, rtol=1e-5)
    assert z.dtype == np.float32
    np.testing.assert_allclose(st.inverse(z), x, rtol=1e-5, atol=1e-5)
    zt = st.transform(torch.from_numpy(x))
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    torch.testing.assert_close(zt, torch.from_numpy(z))
    torch.testing.assert_close(st.inverse(zt[None]), torch.from_numpy(x)[None])  # extra leading dims


def test_standardizer_dict_zero_std_and_errors() -> None:
    x = np.stack([np.full((4, 6), 2.5), np.arange(24.0).reshape(4, 6)], axis=-1)
    st = Standardizer.fit(x)
    assert st.std[0] == 1.0  # constant channel: centred only, no division by ~0
    np.testing.assert_allclose(st.inverse(st.transform(x)), x)
    st2 = Standardizer.from_dict(json.loads(json.dumps(st.to_dict())))
    np.testing.assert_array_equal(st2.mean, st.mean)
    np.testing.assert_array_equal(st2.std, st.std)
    with pytest.raises(ValueError, match="2 channels"):
        st.transform(np.zeros((3, 6, 3)))
    with pytest.raises(ValueError, match="NaN"):
        Standardizer.fit(np.array([[[np.nan]]]))
    with pytest.raises(ValueError, match="'mean' and 'std'"):
        Standardizer.from_dict({"mean": [0.0]})


def test_bad_paper_files_name_the_file(tmp_path: Path) -> None:
    """A header row, a ragged row, a binary file, a non-number: one ValueError naming the file."""
    rng = np.random.default_rng(0)
    good = np.hstack([rng.random((3, 187)), np.zeros((3, 1))])
    np.savetxt(tmp_path / "mitbih_test.csv", good, delimiter=",")
    train = tmp_path / "mitbih_train.csv"
    cases = [
        ("c" + ",c" * 187 + "\n", r"mitbih_train.csv: line 1, column 1: expected a number, got 'c' \(a header row"),
        ("1," * 187 + "0\n" + "1,2\n", r"mitbih_train.csv: line 2 has 2 values but earlier lines have 188"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe", r"mitbih_train.csv: is not a text CSV file"),
    ]
    for content, match in cases:
        train.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(ValueError, match=match):
            load_dataset("ecg-kaggle", root=tmp_path)
    _nasa_fixture(tmp_path)
    meta = tmp_path / "metadata.csv"
    import csv

    with open(meta, newline="") as fh:
        first = next(r["filename"] for r in csv.DictReader(fh) if r["type"] == "charge")
    cycle = tmp_path / "data" / first
    cycle.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match=rf"{cycle.name}: not a UTF-8 text CSV file"):
        load_dataset("nasa-charge", root=tmp_path)
    assert meta.is_file()
