"""TokenMoments: the fit, the closed-form E[eps | z] it implies, validation, checkpoint round trip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pyfdc.core.checkpoint import (load_checkpoint, save_checkpoint,
                              update_checkpoint_token_moments)
from pyfdc.core.token_moments import TokenMoments

from tinymodels import T, tiny_model


def test_fit_is_mean_and_population_variance():
    z = torch.randn(50, 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tm = TokenMoments.fit(z)
    np.testing.assert_allclose(tm.mean, z.mean(0).numpy(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(tm.var, z.var(0, unbiased=False).numpy(), rtol=1e-13, atol=0)


@pytest.mark.parametrize("t", [0.05, 0.3, 0.9])
def test_posterior_eps_is_the_regression_of_eps_on_z_for_gaussian_tokens(t):
    """For x0 ~ N(μ, λ) per coordinate, E[ε | z] is linear in z; a least-squares fit of ε on z over
    400k draws recovers slope and intercept. Tolerance 0.01: the slope's standard error here is
    ≤ 1/√400k · (sd ratio) ≈ 0.002, so 0.01 is 5 s.e. while a wrong λ or a missing α (the likely
    mistakes) moves the slope by ≥ 0.05."""
    from pyfdc.core.sde import VPSDE

    g = torch.Generator().manual_seed(1)
    mean = torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=torch.float64)
    var = torch.tensor([[4.0, 0.25], [1.0, 0.01]], dtype=torch.float64)
    tm = TokenMoments(mean.numpy(), var.numpy())
    n = 400_000
    x0 = mean + var.sqrt() * torch.randn(n, 2, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 2, 2, generator=g, dtype=torch.float64)
    a, s = VPSDE().marginal(torch.full((n,), t, dtype=torch.float64))
    z = a[:, None, None] * x0 + s[:, None, None] * eps
    pred = tm.posterior_eps(z, a, s)
    zc = z - z.mean(0)
    slope_emp = (zc * (eps - eps.mean(0))).mean(0) / zc.pow(2).mean(0)
    slope_pred = (zc * (pred - pred.mean(0))).mean(0) / zc.pow(2).mean(0)
    torch.testing.assert_close(slope_pred, slope_emp, rtol=0, atol=0.01)
    torch.testing.assert_close(pred.mean(0), eps.mean(0), rtol=0, atol=0.01)  # both ~0: intercept via mu


@pytest.mark.parametrize("args,match", [
    (([[0.0]], [[-1.0]]), "var finite and >= 0"),
    (([[0.0]], [[np.nan]]), "var finite"),
    (([0.0], [1.0]), r"must both be \(T, C\)"),
    (([[0.0, 1.0]], [[1.0]]), r"must both be \(T, C\)"),
])
def test_bad_moments_are_one_line_errors(args, match):
    with pytest.raises(ValueError, match=match):
        TokenMoments(*args)


def test_fit_rejects_nan_and_too_few():
    with pytest.raises(ValueError, match="NaN/Inf"):
        TokenMoments.fit(torch.tensor([[[np.nan]], [[1.0]]]))
    with pytest.raises(ValueError, match=r"\(n >= 2, T, C\)"):
        TokenMoments.fit(torch.zeros(1, 3, 2))


def test_checkpoint_round_trip_and_older_checkpoints(tmp_path: Path):
    model = tiny_model()
    save_checkpoint(tmp_path / "old", model)
    assert load_checkpoint(tmp_path / "old").token_moments is None      # written without them
    tm = TokenMoments(np.linspace(-1, 1, T * 2).reshape(T, 2), np.linspace(0.1, 2, T * 2).reshape(T, 2))
    update_checkpoint_token_moments(tmp_path / "old", tm)
    got = load_checkpoint(tmp_path / "old").token_moments
    np.testing.assert_array_equal(got.mean, tm.mean)
    np.testing.assert_array_equal(got.var, tm.var)
    model.token_moments = tm
    save_checkpoint(tmp_path / "new", model)
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "new").token_moments.var, tm.var)
    with pytest.raises(ValueError, match=r"token moments are \(3, 2\)"):
        update_checkpoint_token_moments(tmp_path / "new", TokenMoments(np.zeros((3, 2)), np.ones((3, 2))))


def test_model_rejects_moments_of_another_shape():
    from dataclasses import replace

    with pytest.raises(ValueError, match=r"token_moments are for \(T, C\) = \(3, 2\)"):
        replace(tiny_model(), token_moments=TokenMoments(np.zeros((3, 2)), np.ones((3, 2))))
