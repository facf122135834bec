"""The user's own series: load_series (.npy/.npz/.csv, splits, errors naming file and line) and the
CLI route train --data -> sample -> evaluate, which finds the held-out split again."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pyfdc.cli import main
from pyfdc.data import load_series, reload_from_meta


def _series(S=20, N=24, M=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, N)
    return (np.sin(2 * np.pi * (3 * t[None, :, None] + rng.random((S, 1, M)))) + 0.1 * rng.standard_normal((S, N, M))
            ).astype(np.float32)


def test_npy_npz_csv_agree(tmp_path):
    x = _series(M=2)
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", series=x)
    rows = x.transpose(0, 2, 1).reshape(len(x), -1)          # channel 0's N values, then channel 1's
    (tmp_path / "c.csv").write_text("\n".join(",".join(repr(float(v)) for v in r) for r in rows) + "\n\n")
    sets = [load_series(tmp_path / "a.npy"), load_series(tmp_path / "b.npz"), load_series(tmp_path / "c.csv", channels=2)]
    for d in sets:
        assert d.train.shape == (16, 24, 2) and d.test.shape == (4, 24, 2)
        np.testing.assert_array_equal(d.test, x[16:])         # time split: the last 20% in file order
    assert sets[0].meta["sha256"] == load_series(tmp_path / "a.npy").meta["sha256"]


def test_random_split_and_presplit(tmp_path):
    x = _series(S=30)
    np.save(tmp_path / "a.npy", x[:, :, 0])                   # (S, N): one channel
    d = load_series(tmp_path / "a.npy", split="random", test_fraction=0.3, seed=4)
    assert d.train.shape == (21, 24, 1) and d.test.shape == (9, 24, 1)
    assert not np.array_equal(d.test, x[21:])                 # not the time split
    again = load_series(tmp_path / "a.npy", split="random", test_fraction=0.3, seed=4)
    np.testing.assert_array_equal(d.test, again.test)          # seeded
    np.savez(tmp_path / "s.npz", train=x[:5], test=x[5:7])
    d = load_series(tmp_path / "s.npz")
    assert d.train.shape[0] == 5 and d.test.shape[0] == 2 and d.meta["split"] == "file"


@pytest.mark.parametrize("name,content,match", [
    ("h.csv", "a,b,c\n1,2,3\n", r"h.csv: line 1, column 1: expected a number, got 'a' \(a header row\? remove it\)"),
    ("r.csv", "1,2,3\n4,5\n", r"r.csv: line 2 has 2 values but earlier lines have 3"),
    ("n.csv", "1,2,3\n4,x,6\n", r"n.csv: line 2, column 2: expected a number, got 'x'"),
    ("bin.csv", b"\xff\xfe\x00\x81", r"bin.csv: is not a text CSV file"),
    ("bad.npy", b"not an array", r"bad.npy: cannot be read as .npy"),
    ("nan.csv", "1,2,3\n1,nan,3\n1,2,3\n", r"nan.csv: file:nan.csv.train contains 1 NaN/Inf"),
    ("few.csv", "1,2\n", r"few.csv: 1 series cannot be split"),
    ("x.dat", "1,2\n", r"x.dat: unknown data format '.dat'"),
])
def test_errors_name_file_and_line(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=match):
        load_series(p, test_fraction=0.34)


def test_changed_file_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", _series())
    d = load_series(tmp_path / "a.npy")
    np.save(tmp_path / "a.npy", _series(seed=1))
    with pytest.raises(ValueError, match="contents differ from the file this model was trained on"):
        reload_from_meta(d.meta)


def _run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out + cap.err


def test_cli_train_sample_evaluate_on_own_file(tmp_path, capsys):
    data = tmp_path / "mine.npy"
    np.save(data, _series(S=24, N=32))
    ck, smp, ev = tmp_path / "model", tmp_path / "samples", tmp_path / "eval"
    assert _run(capsys, "train", "--tiny", "--data", data, "--epochs", "1", "--out", ck, "--no-progress")[0] == 0
    cfg = json.loads((ck / "config.json").read_text())
    assert cfg["meta"]["data_file"]["path"] == str(data.resolve()) and cfg["transform"]["n"] == 32
    assert _run(capsys, "sample", "--checkpoint", ck, "--num-samples", "6", "--steps", "3", "--out", smp,
                "--no-progress")[0] == 0
    code, text = _run(capsys, "evaluate", "--checkpoint", ck, "--samples", smp, "--out", ev, "--projections", "50",
                      "--c2st-repeats", "0")
    assert code == 0, text
    assert json.loads((ev / "metrics.json").read_text())["num_heldout"] == 5    # round(0.2 * 24)
    moved = tmp_path / "moved.npy"
    data.rename(moved)
    code, text = _run(capsys, "evaluate", "--checkpoint", ck, "--samples", smp, "--out", tmp_path / "e2",
                      "--projections", "50", "--c2st-repeats", "0")
    assert code == 2 and "is gone; pass --data FILE" in text and "Traceback" not in text
    assert _run(capsys, "evaluate", "--checkpoint", ck, "--samples", smp, "--out", tmp_path / "e3", "--data", moved,
                "--projections", "50", "--c2st-repeats", "0")[0] == 0


@pytest.mark.parametrize("argv,match", [
    (["--split", "random"], "--split need --data FILE"),
    (["--data", "x.npy", "--dataset", "ecg"], "--data FILE replaces --dataset"),
    (["--data", "x.npy", "--channels", "2"], "--channels/--length are for .csv/.parquet files only"),
    (["--data", "missing.npy"], "missing.npy: no such data file"),
])
def test_cli_own_data_errors(tmp_path, capsys, argv, match):
    code, text = _run(capsys, "train", "--tiny", *argv, "--out", tmp_path / "m", "--no-progress")
    assert code == 2 and match in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1


def test_overwrite_leaves_no_stale_outputs(tmp_path, capsys):
    """sample --overwrite of an E2-CRF folder with plain EM drops the old stats; evaluate then plots
    none; a corrupt stats file is refused before anything is written; foreign files are refused."""
    data = tmp_path / "mine.npy"
    np.save(data, _series(S=24, N=32))
    ck, smp = tmp_path / "model", tmp_path / "samples"
    assert _run(capsys, "train", "--tiny", "--data", data, "--epochs", "1", "--out", ck, "--no-progress")[0] == 0
    base = ["sample", "--checkpoint", ck, "--num-samples", "4", "--steps", "4", "--out", smp, "--no-progress"]
    assert _run(capsys, *base, "--sampler", "e2crf")[0] == 0 and (smp / "e2crf_stats.json").is_file()
    assert _run(capsys, *base, "--overwrite")[0] == 0
    assert not (smp / "e2crf_stats.json").exists()
    ev = tmp_path / "eval"
    ev_args = ["evaluate", "--checkpoint", ck, "--samples", smp, "--projections", "50", "--c2st-repeats", "0"]
    assert _run(capsys, *ev_args, "--out", ev)[0] == 0 and not (ev / "e2crf_stats.png").exists()
    assert _run(capsys, *base, "--sampler", "e2crf", "--overwrite")[0] == 0
    (smp / "e2crf_stats.json").write_text("{truncated")
    code, text = _run(capsys, *ev_args, "--out", tmp_path / "ev2")
    assert code == 2 and "corrupt E2-CRF statistics" in text and not (tmp_path / "ev2").exists()
    (smp / "notes.txt").write_text("mine")
    code, text = _run(capsys, *base, "--overwrite")
    assert code == 2 and "holds files this command does not write (notes.txt)" in text


def test_long_format_csv(tmp_path):
    x = _series(S=10, N=8, M=2)
    (tmp_path / "long.csv").write_text("\n".join(",".join(repr(float(v)) for v in step) for s in x for step in s) + "\n")
    d = load_series(tmp_path / "long.csv", channels=2, length=8)
    assert d.train.shape == (8, 8, 2)
    np.testing.assert_allclose(d.test, x[8:], rtol=1e-6)
    with pytest.raises(ValueError, match=r"long.csv: long format: 80 lines are not a whole number of series of --length 7"):
        load_series(tmp_path / "long.csv", channels=2, length=7)


def test_parquet(tmp_path):
    x = _series(S=10, N=6)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        (tmp_path / "a.parquet").write_bytes(b"PAR1")
        with pytest.raises(ValueError, match=r"a.parquet: reading .parquet needs pyarrow"):
            load_series(tmp_path / "a.parquet")
        return
    pq.write_table(pa.table({f"t{i}": x[:, i, 0] for i in range(6)}), tmp_path / "a.parquet")
    d = load_series(tmp_path / "a.parquet")
    np.testing.assert_allclose(d.test, x[8:], rtol=1e-6)
