"""The quality yardstick: C2ST under the null, its power on known differences, spectral and paired errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("sklearn")

from pyfdc.data import load_dataset  # noqa: E402
from pyfdc.e2crf.shadow import band_edges, band_spectral_error, paired_deviation  # noqa: E402
from pyfdc.evaluation.quality import (  # noqa: E402
    c2st, c2st_report, constant_pad, data_report, gaussian_baseline, raw_features, sampler_report, shape_stats,
    summary_features,
)


def _ar1(n: int, length: int, seed: int, phi: float = 0.8) -> np.ndarray:
    """AR(1) series (n, length, 1) with unit marginal variance: a smooth, correlated null distribution."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, length))
    x[:, 0] = rng.normal(size=n)
    for k in range(1, length):
        x[:, k] = phi * x[:, k - 1] + math.sqrt(1 - phi * phi) * rng.normal(size=n)
    return x[:, :, None]


@pytest.mark.parametrize("classifier", ["hgb", "linear"])
def test_c2st_null_is_within_its_interval_of_half(classifier: str) -> None:
    # Under the null each run's 95% interval misses 0.5 one time in 20, so check four independent
    # pairs: their mean within 3 s.e. of 0.5 (s.e. 0.0125 for 4 x 800 predictions) and no single
    # run beyond 4 s.e. (0.071). A leak of labels or of test folds into the fit fails both.
    accs = []
    for s in range(4):
        res = c2st(_ar1(400, 48, 2 * s), _ar1(400, 48, 2 * s + 1), classifier, seed=s)
        assert res.n_per_side == 400 and abs(res.accuracy - 0.5) < 0.071, res
        accs.append(res.accuracy)
    assert abs(np.mean(accs) - 0.5) < 0.0375, accs


@pytest.mark.parametrize("classifier", ["hgb", "linear"])
def test_c2st_sees_a_known_mean_shift_but_not_beyond_bayes(classifier: str) -> None:
    # White noise of length N shifted by delta: the best possible test statistic is the series mean,
    # with d' = delta sqrt(N); Bayes accuracy Phi(d'/2) = 0.69 for delta = 0.125, N = 64. A classifier
    # can only fall short of it; beating it by more than noise would mean label leakage.
    rng = np.random.default_rng(0)
    n, length, delta = 500, 64, 0.125
    a = rng.normal(size=(n, length, 1))
    b = rng.normal(size=(n, length, 1)) + delta
    bayes = 0.5 * (1 + math.erf(delta * math.sqrt(length) / 2 / math.sqrt(2)))
    res = c2st(a, b, classifier, seed=0)
    se = math.sqrt(bayes * (1 - bayes) / (2 * n))
    assert 0.6 < res.accuracy < bayes + 3 * se, (res, bayes)
    assert res.ci_low > 0.5 and res.p_value < 1e-6


def test_c2st_tells_a_fitted_gaussian_from_real_beats() -> None:
    ds = load_dataset("ecg")
    gauss = gaussian_baseline(ds.train, len(ds.train), seed=0)
    rep = c2st_report(gauss, ds.train, seed=0)
    assert rep["headline"] > 0.8 and rep["hgb"]["ci_low"] > 0.7, rep
    # and the tree classifier sees the rougher Gaussian draws better than the linear one (its purpose)
    assert rep["hgb"]["accuracy"] > rep["linear"]["accuracy"]


def test_c2st_is_deterministic_and_balances_unequal_sets() -> None:
    a, b = _ar1(300, 32, 0), _ar1(120, 32, 1)
    r1, r2 = c2st(a, b, "hgb", seed=5), c2st(a, b, "hgb", seed=5)
    assert r1 == r2 and r1.n_per_side == 120


def test_c2st_rejects_bad_input() -> None:
    a = _ar1(20, 16, 0)
    with pytest.raises(ValueError, match="share"):
        c2st(a, _ar1(20, 17, 0))
    bad = a.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        c2st(bad, a)
    with pytest.raises(ValueError, match="classifier"):
        c2st(a, a, "svm")
    with pytest.raises(ValueError, match="at least folds"):
        c2st(a[:3], a[:3])
    with pytest.raises(ValueError, match="shape"):
        c2st(np.zeros((4,)), a)


def test_features_have_fixed_width_and_see_channels() -> None:
    x = _ar1(10, 40, 0)
    assert summary_features(x).shape == (10, 12 + 8) and np.isfinite(summary_features(x)).all()
    x2 = np.concatenate([x, -x], axis=2)
    f2 = summary_features(x2)
    assert f2.shape == (10, 2 * 20 + 1)
    np.testing.assert_allclose(f2[:, -1], -1.0, atol=1e-9)  # correlation of x with -x
    assert raw_features(x).shape == (10, 40 + 21 + 2)


def test_band_error_is_zero_against_itself_and_finds_excess_high_frequency() -> None:
    ref = _ar1(200, 188, 0)
    assert all(v == 0.0 for v in band_spectral_error(ref, ref).values())
    noisy = ref + 0.3 * np.random.default_rng(1).normal(size=ref.shape)
    err = band_spectral_error(noisy, ref)
    keys = list(err)
    assert keys == ["k0-10", "k10-28", "k28-57", "k57-95"] and band_edges(94) == [(0, 9), (9, 28), (28, 56), (56, 94)]
    assert err[keys[-1]] > 0.5 and abs(err[keys[0]]) < 0.05  # AR(1) power falls ~1/k^2: noise shows at top


def test_paired_deviation_measures_relative_rms() -> None:
    ref = _ar1(50, 32, 0)
    assert paired_deviation(ref, ref)["mean"] == 0.0
    dev = paired_deviation(1.1 * ref, ref)
    assert dev["mean"] == pytest.approx(0.1) and all(v == pytest.approx(0.1) for v in dev["bands"].values())
    with pytest.raises(ValueError, match="same sample ids"):
        paired_deviation(ref[:10], ref)


def test_constant_pad_and_shape_stats() -> None:
    ds = load_dataset("ecg")
    pad = constant_pad(np.concatenate([ds.train, ds.test]))
    assert pad is not None and pad[1] == 0.0 and 60 <= 187 - pad[0] <= 120
    assert constant_pad(_ar1(5, 30, 0)) is None
    st = shape_stats(ds.test, pad)
    assert st["pad_residue_p95"] == 0.0 and 0 < st["roughness"] < 0.05
    wobbly = ds.test + 0.01
    assert shape_stats(wobbly, pad)["pad_residue_p95"] == pytest.approx(0.01)


def test_reports_put_floor_and_baselines_beside_the_candidate() -> None:
    ref, floor = _ar1(120, 32, 0), _ar1(120, 32, 1)
    cand = 1.3 * _ar1(120, 32, 2)
    rep = sampler_report(cand, ref, floor, seed=0)
    assert rep["candidate"]["c2st"]["headline"] > rep["floor"]["c2st"]["headline"]
    assert rep["candidate"]["band_error"]["k0-2"] > 0.3
    ds = load_dataset("ecg")
    dr = data_report(ds.train[:91], ds.train[91:], ds.test, repeats=2, seed=0)
    assert {"generated", "floor_train", "gaussian", "pad"} <= set(dr)
    assert dr["gaussian"]["c2st"]["headline"] > dr["floor_train"]["c2st"]["headline"]


@pytest.mark.parametrize("n,m", [(3, 1), (5, 2), (24, 12), (187, 1)])
def test_summary_feature_names_name_every_column(n: int, m: int) -> None:
    """The shadow gate reports each summary statistic by name: one name per column, in column order."""
    from pyfdc.series_summary import summary_feature_names

    x = np.random.default_rng(0).normal(size=(6, n, m))
    names = summary_feature_names(n, m)
    assert len(names) == summary_features(x).shape[1] == len(set(names))
    assert names[6 * m] == "abs_diff[0]" and (m == 1 or names[-1] == f"corr[{m - 2},{m - 1}]")
