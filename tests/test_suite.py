"""The development suite's datasets (aeon's files: skipped without the suite extra) and its report."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import suite_data  # noqa: E402
import suite_stages  # noqa: E402

HAVE_AEON = importlib.util.find_spec("aeon") is not None
needs_aeon = pytest.mark.skipif(not HAVE_AEON, reason="the suite extra (aeon's data files) is not installed")

SHAPES = {"ecg": (374, 91, 187, 1), "italypower": (877, 219, 24, 1), "gunpoint": (160, 40, 150, 1),
          "acsf1": (1600, 400, 146, 1), "osuleaf": (354, 88, 427, 1), "basicmotions": (40, 40, 100, 6), "japanesevowels": (512, 128, 25, 12),
          "sines": (10_000, 2_000, 24, 5)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_suite_dataset_shapes_and_disjoint_split(name: str) -> None:
    if name not in ("ecg", "sines") and not HAVE_AEON:
        pytest.skip("the suite extra (aeon's data files) is not installed")
    ds = suite_data.load_suite_dataset(name)
    assert (len(ds.train), len(ds.test), ds.length, ds.channels) == SHAPES[name]
    # no series (or window) on both sides of the split
    train_keys = {row.tobytes() for row in ds.train}
    assert not any(row.tobytes() in train_keys for row in ds.test)


@needs_aeon
def test_acsf1_windows_never_cross_the_split() -> None:
    tr, te = suite_data._pooled("ACSF1")
    ds = suite_data.load_acsf1()
    per = tr.shape[1] // suite_data.ACSF1_WINDOW
    np.testing.assert_array_equal(ds.train[:per].reshape(-1), tr[0, :per * suite_data.ACSF1_WINDOW, 0].astype(np.float32))
    np.testing.assert_array_equal(ds.test[:per].reshape(-1), te[0, :per * suite_data.ACSF1_WINDOW, 0].astype(np.float32))


def test_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite_data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(suite_data.SuiteDataMissing) as err:
        suite_data.load_suite_dataset("gunpoint")
    assert "pyfdc[suite]" in str(err.value) and "\n" not in str(err.value)
    assert suite_data.load_suite_dataset("sines").train.shape[0] == 10_000  # needs no extra
    with pytest.raises(ValueError, match="unknown suite dataset"):
        suite_data.load_suite_dataset("pigcvp")


def test_default_spec_is_the_cli_default() -> None:
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.e2crf import E2CRFConfig
    from pyfdc.e2crf.calibrate import default_config
    from pyfdc.evaluation.front import parse_spec
    from pyfdc.pretrained import pretrained_path

    model = load_checkpoint(pretrained_path("ecg_small_freq"))
    for steps in (1000, 100):
        spec = parse_spec(suite_stages.default_e2crf_spec(model, steps))
        want = default_config(model, steps)
        assert spec.steps == steps and (spec.uncached if want is None else spec.e2crf_config() == want)
    assert suite_stages.config_spec(E2CRFConfig(), 50) == "e2crf:50"


def _data_rep(c2st: float, rough: float) -> dict:
    cell = {"c2st": {"headline": c2st}, "shape": {"roughness": rough}}
    return {"num_heldout": 40, "generated": cell, "floor_train": cell, "gaussian": cell,
            "shape_heldout": {"roughness": 0.5}}


def test_summary_reports_what_ran(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "scores.json").write_text(json.dumps({"freq": _data_rep(0.61, 0.7), "time": _data_rep(0.83, 0.9)}))
    (tmp_path / "b").mkdir()  # nothing scored yet
    suite_stages.write_summary(tmp_path, ["a", "b", "c"])
    text = (tmp_path / "summary.md").read_text()
    assert "| a | 40 | 0.610 | 0.830 |" in text and "0.5000 / 0.7000 / 0.9000" in text
    assert "| b | – | – | – |" in text and "| c |" not in text
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["dataset"] for r in rows] == ["a", "b"] and rows[0]["c2st_time"] == 0.83


def test_suite_command_names_the_missing_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import suite

    monkeypatch.setattr(suite_data.importlib.util, "find_spec", lambda name: None)
    assert suite.main(["--out", str(tmp_path), "--datasets", "gunpoint", "acsf1", "--stages", "report"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("skipping" in line and "pyfdc[suite]" in line for line in err)
    assert (tmp_path / "summary.md").is_file()


def _front_row(spec: str, c2st: float, speed: float) -> dict:
    return {"sampler": spec, "c2st": {"headline": c2st, "hgb": {"n_per_side": 128}}, "speedup_vs_em1000": speed,
            "recomputed_fraction": 0.5}


@pytest.mark.parametrize("c2st_02, predicts", [(0.74, True), (0.51, False)])
def test_calibration_table_says_whether_the_shadow_test_predicted(tmp_path: Path, c2st_02: float,
                                                                 predicts: bool) -> None:
    """f 0.2 fails the shadow test and f 0.35 passes: safe either way; exact when f 0.2 changes the
    distribution, not when f 0.2 keeps it (the calibration then paid for more than it needed)."""
    import suite_calibration as sc

    from pyfdc.e2crf import E2CRFConfig
    from pyfdc.e2crf.calibrate import Calibration

    folder = tmp_path / "d"
    (folder / "front").mkdir(parents=True)
    (folder / "calibration").mkdir()
    (folder / "freq" / "calibrations").mkdir(parents=True)
    rows = [{"candidate": {"budget": b}, "deviation_median": 0.01, "worst_band_error": 0.01, "shift": d,
             "speedup": 2.0, "passed": ok} for b, d, ok in ((0.2, 0.25, False), (0.35, 0.05, True))]
    Calibration(E2CRFConfig(0.35), False, 1000, "em", {}, rows, 32, model_id="x").save(sc._path(folder))
    s02, s035 = "e2crf(budget=0.2):1000", "e2crf(budget=0.35):1000"
    sc._specs_path(folder).write_text(json.dumps([s02, s035]))
    floor = _front_row("em:1000 (floor)", 0.50, 1.0)
    front = {"floor": floor, "rows": [floor, _front_row(s02, c2st_02, 3.0), _front_row(s035, 0.52, 2.2)]}
    (folder / "front" / "front.json").write_text(json.dumps(front))
    got = sc.calibration_rows(folder)
    assert got["chosen"] == 0.35 and got["safe"] and got["exact"] is predicts
    assert got["cheapest_kept"] == (0.35 if predicts else 0.2)
    assert [c["keeps"] for c in got["candidates"]] == [not predicts, True]  # 0.52 is within 1.96 s.e. of 0.50
    line = sc.calibration_table({"d": got}).splitlines()[2]
    assert line.startswith("| d | 0.500 | fail 0.25 →") and line.endswith("| f 0.35 | "
                                                                                + ("f 0.35 | yes | yes |" if predicts else "f 0.2 | yes | no |"))
