"""pyfdc.evaluation.metrics against POT and SciPy, plus invariances and input checks."""
from __future__ import annotations

import numpy as np
import ot
import pytest
import scipy.stats
import torch

from pyfdc.evaluation.metrics import (
    marginal_wasserstein,
    sliced_wasserstein,
    sliced_wasserstein_projections,
    sliced_wasserstein_stats,
    wasserstein_1d,
)


@pytest.mark.parametrize("n,m", [(40, 40), (37, 53), (1, 9)])
def test_w1_matches_scipy_unequal_sizes(n: int, m: int) -> None:
    # scipy.stats.wasserstein_distance is exactly W_1 between empirical measures: checks the quantile grid.
    rng = np.random.default_rng(n + m)
    u, v = rng.normal(size=(n, 3)), rng.gamma(2.0, size=(m, 3))
    ours = wasserstein_1d(torch.from_numpy(u), torch.from_numpy(v), p=1).numpy()
    ref = [scipy.stats.wasserstein_distance(u[:, j], v[:, j]) for j in range(3)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


@pytest.mark.parametrize("n,m", [(30, 30), (23, 41)])
def test_w2_matches_exact_lp(n: int, m: int) -> None:
    # W_2 has no SciPy routine (wasserstein_distance is W_1, wasserstein_distance_nd too); the exact
    # reference is the optimal-transport LP with squared cost (ot.emd2), an independent algorithm.
    rng = np.random.default_rng(7)
    u, v = rng.normal(size=n), rng.normal(1.0, 2.0, size=m)
    lp = np.sqrt(ot.emd2(np.full(n, 1 / n), np.full(m, 1 / m), (u[:, None] - v[None, :]) ** 2))
    ours = float(wasserstein_1d(torch.from_numpy(u[:, None]), torch.from_numpy(v[:, None]), p=2)[0])
    np.testing.assert_allclose(ours, lp, rtol=1e-9)  # LP solver accumulates ~1e-12 relative error
    pot = float(ot.wasserstein_1d(u, v, p=2)) ** 0.5  # POT returns W_p^p
    np.testing.assert_allclose(ours, pot, rtol=1e-10)


@pytest.mark.parametrize("n,m", [(64, 64), (50, 80)])
def test_sliced_matches_pot_with_same_directions(n: int, m: int) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(n, 6)), rng.normal(0.5, 1.5, size=(m, 6))
    w = sliced_wasserstein_projections(x, y, n_projections=200, seed=3).numpy()
    theta = np.random.default_rng(3).standard_normal((200, 6))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    pot = ot.sliced_wasserstein_distance(x, y, projections=theta.T, p=2)
    # POT's estimator is (mean of W_2^2)^(1/2); ours reproduces it per projection, then differs only in reduction.
    np.testing.assert_allclose(np.sqrt(np.mean(w**2)), pot, rtol=1e-10)
    np.testing.assert_allclose(sliced_wasserstein(x, y, 200, seed=3, reduction="pot"), pot, rtol=1e-10)
    mean_wp = sliced_wasserstein(x, y, 200, seed=3)
    assert mean_wp == pytest.approx(np.mean(w), rel=1e-12) and mean_wp <= pot  # Jensen


def test_sliced_close_to_pot_with_its_own_random_directions() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 5)), rng.normal(0.3, 1.2, size=(150, 5))
    pot = ot.sliced_wasserstein_distance(x, y, n_projections=4000, p=2, seed=0)
    ours = sliced_wasserstein(x, y, 4000, seed=0, reduction="pot")
    np.testing.assert_allclose(ours, pot, rtol=0.03)  # independent direction draws: MC error ~1%


def test_identical_inputs_and_shift() -> None:
    x = np.random.default_rng(0).normal(size=(32, 10, 2))
    assert sliced_wasserstein(x, x, 500) == 0.0
    assert torch.all(marginal_wasserstein(x, x) == 0)
    assert sliced_wasserstein(x, x, 500, domain="freq") == pytest.approx(0.0, abs=1e-12)
    # A constant shift c·1 of every coordinate: each marginal W_p is exactly |c|.
    np.testing.assert_allclose(marginal_wasserstein(x, x + 0.7).numpy(), 0.7, rtol=1e-12)


def test_chunked_equals_unchunked_and_seeded() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(40, 12)), rng.normal(size=(33, 12))
    full = sliced_wasserstein_projections(x, y, 300, chunk_size=300)
    for chunk in (1, 7, 128):
        # Same directions either way; only BLAS blocking of the projection matmul may differ (float64 ulps).
        torch.testing.assert_close(sliced_wasserstein_projections(x, y, 300, chunk_size=chunk), full, rtol=0, atol=1e-13)
    assert sliced_wasserstein(x, y, 300, seed=1) != sliced_wasserstein(x, y, 300, seed=0)


def test_freq_domain() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(16)
    x = np.sin(2 * np.pi * t[None, :, None] * rng.uniform(1, 3, (300, 1, 1)) / 16) + 0.1 * rng.normal(size=(300, 16, 1))
    y = rng.normal(size=(250, 16, 1))
    # The half-spectrum map is orthogonal: SW in frequency equals SW in time up to projection noise.
    mt, et = sliced_wasserstein_stats(x, y, 3000, domain="time")
    mf, ef = sliced_wasserstein_stats(x, y, 3000, domain="freq", seed=1)
    assert abs(mt - mf) < 2 * np.hypot(et, ef)  # within 4 standard errors of the difference
    mw = marginal_wasserstein(x, y, domain="freq")
    assert mw.shape == (9 * 2,)
    # Token layout (N', 2M) flattened: bin k is [Re, Im] at 2k, 2k+1; Im DC and Im Nyquist are pinned to 0.
    assert mw[1] == 0 and mw[17] == 0 and torch.all(mw[::2] > 0)
    with pytest.raises(ValueError, match=r"\(n, N, M\)"):
        sliced_wasserstein(x[:, :, 0], y[:, :, 0], 10, domain="freq")


def test_stats_and_torch_inputs() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 8, 1, generator=gen), torch.randn(70, 8, 1, generator=gen) + 1.0
    mean, err = sliced_wasserstein_stats(x, y, 1000)
    assert mean == pytest.approx(sliced_wasserstein(x.numpy(), y.numpy(), 1000), rel=1e-12)
    assert 0 < err < 0.2 * mean


def test_bad_inputs() -> None:
    x = np.zeros((5, 4))
    with pytest.raises(ValueError, match="per-sample shape"):
        sliced_wasserstein(x, np.zeros((5, 3)), 10)
    with pytest.raises(ValueError, match="NaN/Inf"):
        sliced_wasserstein(x, np.full((5, 4), np.inf), 10)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, x, 0)
    with pytest.raises(ValueError, match="domain"):
        sliced_wasserstein(x, x, 10, domain="wavelet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="p must be"):
        marginal_wasserstein(x, x, p=0.5)
    with pytest.raises(ValueError, match=r"\(n, \.\.\.\)"):
        marginal_wasserstein(np.zeros(4), np.zeros(4))
    with pytest.raises(TypeError, match="floating"):
        marginal_wasserstein(np.zeros((3, 2), dtype=np.int64), np.zeros((3, 2), dtype=np.int64))
