"""Misuse cases from the reliability issue: each gives a one-line error (exit 2 on the CLI) or a correct result."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyfdc.cli import main
from pyfdc.data import TimeSeriesDataset, load_series
from tinymodels import tiny_model

TINY_TRAIN = ["--tiny", "--epochs", "2", "--no-progress"]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main([*argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out + cap.err


def _one_line_error(code: int, text: str, needle: str) -> None:
    assert code == 2, text
    assert needle in text and "Traceback" not in text, text
    errors = [line for line in text.splitlines() if "error" in line]
    assert len(errors) == 1, text


@pytest.fixture()
def waves(tmp_path: Path) -> Path:
    t = np.linspace(0, 1, 16)
    x = np.sin(2 * np.pi * (3 * t + np.random.default_rng(0).random((30, 1))))
    path = tmp_path / "waves.npy"
    np.save(path, x)
    return path


def test_val_fraction_zero_trains(capsys: pytest.CaptureFixture[str], tmp_path: Path, waves: Path) -> None:
    # documented range [0, 1): no validation split, the last epoch's model is kept
    code, text = _cli(capsys, "train", "--data", str(waves), "--val-fraction", "0", "--out", str(tmp_path / "m"),
                      *TINY_TRAIN)
    assert code == 0 and "trained 2 epochs" in text, text
    assert (tmp_path / "m" / "config.json").is_file()


@pytest.mark.parametrize("lr", ["1e6", "1e30"])
def test_diverging_training_is_one_line_and_leaves_no_orphan_state(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path, waves: Path, lr: str) -> None:
    out = tmp_path / "m"
    code, text = _cli(capsys, "train", "--data", str(waves), "--lr", lr, "--out", str(out), *TINY_TRAIN)
    _one_line_error(code, text, "try a lower lr")
    if (out / "config.json").is_file():  # an epoch before the blow-up committed a model: it stays loadable
        from pyfdc.core.checkpoint import load_checkpoint

        load_checkpoint(out)
    else:                                 # nothing usable was written: no resume state without a model
        assert not (out / "train_state.pt").exists() and not (out / "history.json").exists()


def test_train_without_a_dataset_is_a_type_error(tmp_path: Path) -> None:
    from pyfdc import train

    with pytest.raises(TypeError, match="dataset must be a TimeSeriesDataset"):
        train(None, tmp_path / "m")


@pytest.mark.parametrize("kw, needle", [
    ({"seed": -1}, "seed must be an int in [0, 2**63)"),
    ({"seed": 2**64}, "seed must be an int in [0, 2**63)"),
    ({"seed": 1.5}, "seed must be an int"),
    ({"sample_offset": -10}, "sample_offset must be an int >= 0"),
])
@pytest.mark.parametrize("which", ["uncached", "e2crf"])
def test_api_checks_seed_and_offset(kw: dict, needle: str, which: str) -> None:
    from pyfdc import E2CRFConfig, Sampler

    model = tiny_model()
    sampler = Sampler(model, "em", cache=None if which == "uncached" else E2CRFConfig(0.5))
    with pytest.raises(ValueError) as err:
        sampler.sample(2, steps=2, **kw)
    assert needle in str(err.value)


@pytest.mark.parametrize("config, needle", [
    ({"K": 16}, "puts all N' = 17 tokens"),
    ({"K": 1000}, "puts all N' = 17 tokens"),
    ({"num_probes": 1000}, "exceeds the 15 tokens outside the band"),
    ({"budget": 0.2, "K": 4}, "exceed the budget"),
])
def test_e2crf_options_that_cannot_hold(config: dict, needle: str) -> None:
    from pyfdc import E2CRFConfig, Sampler

    with pytest.raises(ValueError, match=needle.replace("'", ".")):
        Sampler(tiny_model(), cache=E2CRFConfig(**{"budget": 0.5, **config})).sample(2, steps=3)


def test_e2crf_limits_that_hold_still_sample() -> None:
    # the largest K that still caches a token and a band + probes that fit the budget exactly
    from pyfdc import E2CRFConfig, Sampler

    for cfg in (E2CRFConfig(1.0, K=15, num_probes=1), E2CRFConfig(0.25, K=1, num_probes=2)):
        x = Sampler(tiny_model(), cache=cfg).sample(2, steps=3, progress=False)
        assert x.shape == (2, 32, 1) and np.isfinite(x.numpy()).all()


def test_split_options_on_a_presplit_file_are_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "split.npz"
    np.savez(path, train=rng.normal(size=(8, 6)), test=rng.normal(size=(3, 6)))
    assert load_series(path).test.shape == (3, 6, 1)  # the file's split, kept
    for kw in ({"test_fraction": 0.5}, {"split": "random"}):
        with pytest.raises(ValueError, match="carries its own train/test split"):
            load_series(path, **kw)


def test_cli_test_fraction_on_presplit_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "split.npz"
    rng = np.random.default_rng(0)
    np.savez(path, train=rng.normal(size=(8, 6)), test=rng.normal(size=(3, 6)))
    code, text = _cli(capsys, "train", "--data", str(path), "--test-fraction", "0.5", "--out", str(tmp_path / "m"),
                      *TINY_TRAIN)
    _one_line_error(code, text, "cannot apply")
    assert not (tmp_path / "m").exists()


def test_presplit_checkpoint_finds_its_heldout_split_again(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "split.npz"
    rng = np.random.default_rng(0)
    np.savez(path, train=rng.normal(size=(12, 8)), test=rng.normal(size=(5, 8)))
    assert _cli(capsys, "train", "--data", str(path), "--out", str(tmp_path / "m"), *TINY_TRAIN)[0] == 0
    from pyfdc.core.checkpoint import read_config
    from pyfdc.data import reload_from_meta

    meta = read_config(tmp_path / "m")["meta"]["data_file"]
    assert meta["test_fraction"] is None
    assert isinstance(reload_from_meta(meta), TimeSeriesDataset)


@pytest.mark.parametrize("text, needle", [
    ("1;2;3\n4;5;6\n", "separated by ';'"),
    ("1\t2\t3\n4\t5\t6\n", "separated by tabs"),
    ("1,2,3,\n4,5,6,\n", "a trailing comma?"),
    ("a,b,c\n1,2,3\n", "a header row?"),
])
def test_csv_errors_say_why(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=needle) as err:
        load_series(path)
    assert "\n" not in str(err.value)


def test_csv_with_bom_and_quoted_numbers_loads(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    rows = "\n".join(",".join(f'"{v}"' for v in range(i, i + 4)) for i in range(6))
    path.write_text("\ufeff" + rows + "\n", encoding="utf-8")  # Excel's "CSV UTF-8"
    ds = load_series(path, test_fraction=0.5)
    np.testing.assert_array_equal(ds.train[:, :, 0], [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]])


def test_evaluate_few_series_reports_what_it_can(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                waves: Path) -> None:
    import json

    ckpt, samples = tmp_path / "m", tmp_path / "s"
    assert _cli(capsys, "train", "--data", str(waves), "--out", str(ckpt), *TINY_TRAIN)[0] == 0
    assert _cli(capsys, "sample", "--checkpoint", str(ckpt), "--num-samples", "3", "--steps", "4",
                "--out", str(samples), "--no-progress")[0] == 0
    code, text = _cli(capsys, "evaluate", "--checkpoint", str(ckpt), "--samples", str(samples),
                      "--out", str(tmp_path / "e"), "--projections", "50", "--no-progress")
    assert code == 0, text
    assert "skipped c2st: needs >= 5 series per side" in text and "SW time" in text
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert "quality_vs_heldout" not in metrics and "sw_samples_vs_heldout" in metrics


def test_resume_refuses_a_pickle_payload_without_unsafe_advice(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                               waves: Path) -> None:
    import pickle

    out = tmp_path / "m"
    assert _cli(capsys, "train", "--data", str(waves), "--out", str(out), *TINY_TRAIN)[0] == 0

    class Payload:
        def __reduce__(self):  # what a malicious file would run on an unsafe load
            return (print, ("pwned",))

    import torch

    torch.save({"format": "x", "evil": Payload()}, out / "train_state.pt", pickle_module=pickle)
    code, text = _cli(capsys, "train", "--data", str(waves), "--out", str(out), "--resume", *TINY_TRAIN)
    _one_line_error(code, text, "a safe load refuses")
    assert "weights_only=False" not in text and "pwned" not in text


def test_old_pyarrow_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from pyfdc.data.own import _version_tuple

    assert _version_tuple("14.0.1") == (14, 0, 1) and _version_tuple("15.0.0.dev3") == (15, 0, 0)
    fake = types.ModuleType("pyarrow")
    fake.__version__ = "14.0.0"
    fake.parquet = types.ModuleType("pyarrow.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", fake)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", fake.parquet)
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(ValueError, match="CVE-2023-47248"):
        load_series(path)


def test_dependency_floor_is_declared() -> None:
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"torch>=2.6"' in text and "pyarrow>=14.0.1" in text


@pytest.mark.parametrize("make, needle", [
    (lambda rng: np.zeros((20, 8)), "all zero"),
    (lambda rng: np.full((20, 8), 3.5), "constant"),
    (lambda rng: np.full((20, 8), 101325.0), "constant"),
    (lambda rng: rng.normal(size=(20, 1)), "at least 2 steps"),
])
def test_untrainable_data_is_refused_up_front(tmp_path: Path, make, needle: str) -> None:
    from pyfdc import train

    x = make(np.random.default_rng(0))[:, :, None]
    ds = TimeSeriesDataset("x", x, np.zeros((2, *x.shape[1:])))
    with pytest.raises(ValueError, match=needle):
        train(ds, tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists()


def test_tiny_but_real_spread_is_standardised() -> None:
    # a signal in volts x 1e-13: its spread is real, not a constant channel
    from pyfdc.data import Standardizer

    x = (1e-13 * np.sin(np.linspace(0, 20, 400))).reshape(20, 20, 1)
    st = Standardizer.fit(x)
    z = st.transform(x)
    assert st.std[0] < 1e-12 and abs(float(z.std()) - 1.0) < 1e-6


def test_float64_beyond_float32_range_is_named(tmp_path: Path) -> None:
    path = tmp_path / "huge.npy"
    np.save(path, np.full((10, 6), 1e300) * np.linspace(1, 2, 6))
    with pytest.raises(ValueError, match="beyond float32's range") as err:
        load_series(path)
    assert "NaN" not in str(err.value)


def test_c2st_report_warns_on_paired_sets() -> None:
    from pyfdc.evaluation.quality import c2st_report

    a = np.random.default_rng(0).normal(size=(40, 12, 1))
    with pytest.warns(UserWarning, match="same noise"):
        rep = c2st_report(a, a, classifiers=("linear",))
    assert rep["same_noise_pairs"] is True
    b = np.random.default_rng(1).normal(size=(40, 12, 1))
    import warnings

    from pyfdc.data.sines import make_sines

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert c2st_report(a, b, classifiers=("linear",))["same_noise_pairs"] is False
        # independent Sines sit close in relative terms (all in [0.5, 1] early on): still not twins
        s1, s2 = make_sines(60, seed=1), make_sines(60, seed=2)
        assert c2st_report(s1, s2, classifiers=("linear",))["same_noise_pairs"] is False
    with pytest.warns(UserWarning, match="same noise"):  # a set against itself plus 3% noise: twins
        c2st_report(s1, s1 + 0.03 * np.random.default_rng(0).standard_normal(s1.shape), classifiers=("linear",))


@pytest.mark.parametrize("offset, amplitude", [(101325.0, 0.01), (1.7e9, 1.0)])
def test_large_offset_keeps_float64_from_data_to_samples(offset: float, amplitude: float) -> None:
    # float32 rounds 101325 to steps of 0.0078 and 1.7e9 to steps of 128: the sine would be gone
    from pyfdc.data import Standardizer

    t = np.linspace(0, 1, 32)
    x = offset + amplitude * np.sin(2 * np.pi * (2 * t + np.random.default_rng(0).random((30, 1))))[..., None]
    ds = TimeSeriesDataset("pressure", x[:24], x[24:])
    assert ds.train.dtype == np.float64
    np.testing.assert_array_equal(ds.train, x[:24])
    st = Standardizer.fit(ds.train)
    assert st.needs_float64 and abs(st.std[0] / amplitude - np.sqrt(0.5)) < 0.1
    import torch

    model = tiny_model(dtype=torch.float64)
    model.scaler = st
    z = model.data_to_tokens(torch.as_tensor(ds.train))
    back = model.tokens_to_data(z.float())  # tokens as the float32 network gives them
    assert back.dtype == torch.float64
    # float32 tokens carry ~1e-7 relative error on a standardised O(1) signal: 1e-5 of the amplitude is
    # 100x that, and 1e-3 of float32's own step at the offset (0.0078 / 128)
    np.testing.assert_allclose(back.numpy(), ds.train, rtol=0, atol=1e-5 * amplitude)


def test_ordinary_float64_data_stays_float32() -> None:
    from pyfdc.data import Standardizer

    x = 273.15 + np.random.default_rng(0).normal(size=(20, 8, 2))  # kelvin: float32 holds it to 2e-5 of std
    ds = TimeSeriesDataset("kelvin", x[:15], x[15:])
    assert ds.train.dtype == np.float32 and not Standardizer.fit(ds.train).needs_float64


def test_cli_samples_of_large_offset_data_are_float64(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    t = np.linspace(0, 1, 16)
    x = 101325.0 + 0.01 * np.sin(2 * np.pi * (2 * t + np.random.default_rng(0).random((40, 1))))
    np.save(tmp_path / "pa.npy", x)
    code, text = _cli(capsys, "train", "--data", str(tmp_path / "pa.npy"), "--out", str(tmp_path / "m"), *TINY_TRAIN)
    assert code == 0, text
    code, text = _cli(capsys, "sample", "--checkpoint", str(tmp_path / "m"), "--num-samples", "8", "--steps", "20",
                      "--out", str(tmp_path / "s"), "--no-progress")
    assert code == 0, text
    s = np.load(tmp_path / "s" / "samples.npy")
    # float32 could hold at most ~3 values per 0.02 around 101325; the samples stay inside the data's range
    assert s.dtype == np.float64 and np.unique(s).size > 50
    assert x.min() - 1e-9 <= s.min() and s.max() <= x.max() + 1e-9
