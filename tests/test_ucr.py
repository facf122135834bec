"""UCR/UEA readers on small fixtures in the archive's real file formats, and load_series on them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyfdc.data import load_series, reload_from_meta
from pyfdc.data.ucr import archive_pair, read_ts, read_ucr, read_ucr_text

TS_UNIVARIATE = """#A comment line as the archive writes them
@problemName Tiny
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 4
@classLabel true 1 2
@data
0.5,1.0,-1.5,2.0:1
1,2,3,4:2

3.25,-0.125,0,1e-3:1
"""

TS_MULTIVARIATE = """@problemName TinyMulti
@univariate false
@dimensions 3
@equalLength true
@seriesLength 3
@classLabel true Standing Running
@data
1,2,3:4,5,6:7,8,9:Standing
-1,-2,-3:-4,-5,-6:-7,-8,-9:Running
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_ts_univariate(tmp_path: Path) -> None:
    x, labels = read_ts(_write(tmp_path / "a.ts", TS_UNIVARIATE))
    assert x.shape == (3, 4, 1) and x.dtype == np.float64 and labels == ["1", "2", "1"]
    np.testing.assert_array_equal(x[2, :, 0], [3.25, -0.125, 0.0, 1e-3])


def test_ts_multivariate_channels_in_order(tmp_path: Path) -> None:
    x, labels = read_ts(_write(tmp_path / "m.ts", TS_MULTIVARIATE))
    assert x.shape == (2, 3, 3) and labels == ["Standing", "Running"]
    np.testing.assert_array_equal(x[0, :, 1], [4, 5, 6])       # channel 1 of series 0, in time order
    np.testing.assert_array_equal(x[1, 2, :], [-3, -6, -9])    # last step, every channel


def test_ts_without_labels_and_with_bom(tmp_path: Path) -> None:
    text = "\ufeff@problemName T\n@classLabel false\n@data\n1,2,3\n4,5,6\n"
    x, labels = read_ts(_write(tmp_path / "u.ts", text))
    assert x.shape == (2, 3, 1) and labels == ["", ""]


@pytest.mark.parametrize("text, needle", [
    (TS_UNIVARIATE.replace("1,2,3,4:2", "1,2,3:2"), "unequal lengths"),
    (TS_UNIVARIATE.replace("1,2,3,4:2", "1,?,3,4:2"), "missing value '?'"),
    (TS_UNIVARIATE.replace("1,2,3,4:2", "1,x,3,4:2"), "expected a number"),
    (TS_UNIVARIATE.replace("@timeStamps false", "@timeStamps true"), "@timeStamps true"),
    (TS_UNIVARIATE.replace("@data\n", ""), "line 9"),
    ("@problemName T\n", "no @data line"),
    (TS_MULTIVARIATE.replace("@dimensions 3", "@dimensions 2"), "@dimensions 2"),
    (TS_MULTIVARIATE.replace("-7,-8,-9:Running", "Running"), "2 channels"),
    (TS_MULTIVARIATE.replace("4,5,6:", "4,5:"), "channels have unequal lengths"),
])
def test_ts_errors_name_the_file(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path / "bad.ts", text)
    with pytest.raises(ValueError) as err:
        read_ts(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and needle in msg and "\n" not in msg


@pytest.mark.parametrize("sep", ["\t", ",", "  "])
def test_ucr_text_formats(tmp_path: Path, sep: str) -> None:
    lines = ["2" + sep + sep.join(["0.5", "1.5", "-2"]), "1" + sep + sep.join(["3", "4", "5"])]
    x, labels = read_ucr_text(_write(tmp_path / "g.tsv", "\n".join(lines) + "\n"))
    assert x.shape == (2, 3, 1) and labels == ["2", "1"]
    np.testing.assert_array_equal(x[0, :, 0], [0.5, 1.5, -2])


def test_ucr_text_nan_padding_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.tsv", "1\t0.1\t0.2\t0.3\n2\t0.1\t0.2\tNaN\n")
    with pytest.raises(ValueError, match="line 2: missing value 'NaN'"):
        read_ucr(path)


def test_archive_pair_keeps_the_archive_split(tmp_path: Path) -> None:
    train = _write(tmp_path / "Tiny_TRAIN.ts", TS_UNIVARIATE)
    test = _write(tmp_path / "Tiny_TEST.ts", TS_UNIVARIATE.replace("0.5,1.0", "9,9"))
    assert archive_pair(train) == test and archive_pair(test) is None
    ds = load_series(train)
    assert ds.train.shape == (3, 4, 1) and ds.test.shape == (3, 4, 1)
    assert ds.test[0, 0, 0] == 9 and ds.meta["split"] == "archive"
    again = reload_from_meta(ds.meta)
    np.testing.assert_array_equal(again.test, ds.test)
    test.write_text(TS_UNIVARIATE, encoding="utf-8")          # the held-out file changed since training
    with pytest.raises(ValueError, match="_TEST file"):
        reload_from_meta(ds.meta)


def test_lone_ucr_file_is_split_here(tmp_path: Path) -> None:
    rows = "\n".join(f"{i % 2}\t" + "\t".join(str(v) for v in range(i, i + 5)) for i in range(10))
    ds = load_series(_write(tmp_path / "own.txt", rows + "\n"), test_fraction=0.2)
    assert ds.train.shape == (8, 5, 1) and ds.test.shape == (2, 5, 1) and ds.meta["split"] == "time"
    np.testing.assert_array_equal(ds.test[:, 0, 0], [8, 9])  # the last series in file order are held out
