"""VP-SDE marginals, prior sampling and the denoising score-matching loss."""
from __future__ import annotations

import math

import pytest
import torch

from pyfdc.core.sde import VPSDE, dsm_loss
from pyfdc.core.spectral import make_transform


def test_defaults_and_dict_round_trip() -> None:
    sde = VPSDE()
    assert (sde.beta_min, sde.beta_max, sde.t_eps) == (0.1, 20.0, 1e-5)
    assert VPSDE.from_dict(sde.to_dict()) == sde


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta_min": 0.0}, "beta_min must be > 0"),
        ({"beta_min": -1.0}, "beta_min must be > 0"),
        ({"beta_max": 0.05}, "beta_max must be > beta_min"),
        ({"beta_max": 0.1}, "beta_max must be > beta_min"),
        ({"t_eps": 0.0}, r"t_eps must be in \(0, 1\)"),
        ({"t_eps": 1.0}, r"t_eps must be in \(0, 1\)"),
        ({"beta_max": float("inf")}, "beta_max must be a finite number"),
        ({"beta_min": float("nan")}, "beta_min must be a finite number"),
        ({"t_eps": "1e-5"}, "t_eps must be a finite number"),
    ],
)
def test_bad_hyperparameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VPSDE(**kwargs)


def test_marginal_closed_form() -> None:
    sde = VPSDE()
    t = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    alpha, sigma = sde.marginal(t)
    assert alpha.shape == sigma.shape == t.shape
    torch.testing.assert_close(alpha.square() + sigma.square(), torch.ones_like(t), rtol=0, atol=1e-14)
    assert alpha[0] == 1.0 and sigma[0] == 0.0
    assert bool((alpha.diff() < 0).all()) and bool((sigma.diff() > 0).all())
    torch.testing.assert_close(alpha[-1], torch.tensor(math.exp(-0.5 * (0.1 + 0.5 * 19.9)), dtype=torch.float64))
    # sigma(t_eps) is tiny but resolved (expm1, not 1 - exp): sqrt(B(1e-5)) ~ 1e-3
    _, s_eps = sde.marginal(torch.tensor(1e-5, dtype=torch.float32))
    assert abs(s_eps.item() - math.sqrt(0.1 * 1e-5)) / math.sqrt(0.1 * 1e-5) < 1e-3
    for tf in (1e-5, 0.3, 1.0):
        a, s = sde.marginal(torch.tensor(tf, dtype=torch.float64))
        assert sde.marginal_float(tf) == pytest.approx((a.item(), s.item()), rel=1e-12)
        assert sde.beta_float(tf) == pytest.approx(sde.beta(torch.tensor(tf)).item(), rel=1e-6)


def test_marginal_solves_the_forward_sde_moment_odes() -> None:
    # For dz = -1/2 beta z dt + sqrt(beta) dW: d alpha/dt = -1/2 beta alpha, d var/dt = beta (1 - var).
    sde = VPSDE()
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    h = 1e-6
    (ap, sp), (am, sm) = sde.marginal(t + h), sde.marginal(t - h)
    alpha, sigma = sde.marginal(t)
    # central differences: O(h^2) truncation + O(1e-16/h) round-off ~ 1e-10
    torch.testing.assert_close((ap - am) / (2 * h), -0.5 * sde.beta(t) * alpha, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(
        (sp.square() - sm.square()) / (2 * h), sde.beta(t) * (1 - sigma.square()), rtol=1e-7, atol=1e-9
    )


def test_prior_sample_masked_and_seeded() -> None:
    sde = VPSDE()
    tr = make_transform("freq", 8, 2)
    mask = tr.mask()
    z = sde.prior_sample((4000, tr.num_tokens, tr.token_dim), mask, torch.Generator().manual_seed(0))
    assert z.shape == (4000, 5, 4) and z.dtype == torch.float32
    assert torch.equal(z[:, mask == 0], torch.zeros(4000, 4))  # Im DC + Im Nyquist, M=2
    free = z[:, mask == 1]
    # 4000 x 16 unit Gaussians: mean s.e. 1/sqrt(64000) = 0.004, var s.e. sqrt(2/64000) = 0.0056; 5 s.e.
    assert abs(free.mean().item()) < 0.02 and abs(free.var().item() - 1) < 0.03
    again = sde.prior_sample((4000, 5, 4), mask, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    with pytest.raises(ValueError, match="shape must be"):
        sde.prior_sample((4, 6, 4), mask)


def test_dsm_loss_oracle_is_zero_and_pinned_outputs_ignored() -> None:
    sde = VPSDE()
    tr = make_transform("freq", 9, 2)
    mask = tr.mask()
    z0 = torch.zeros(64, tr.num_tokens, tr.token_dim)

    def oracle(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # z0 = 0 so z_t = sigma eps exactly; also put garbage on pinned coordinates
        return z / sde.marginal(t)[1][:, None, None] + 1e3 * (1 - mask)

    loss = dsm_loss(oracle, z0, sde, mask, torch.Generator().manual_seed(0))
    assert loss.dim() == 0
    assert loss.item() < 1e-10  # float32 round-off of z / sigma only


def test_dsm_loss_zero_net_is_noise_power_and_seeded() -> None:
    sde = VPSDE()
    tr = make_transform("freq", 8, 1)
    mask = tr.mask()
    z0 = tr.to_tokens(torch.randn(512, 8, 1))
    zero_net = lambda z, t: torch.zeros_like(z)  # noqa: E731
    loss = dsm_loss(zero_net, z0, sde, mask, torch.Generator().manual_seed(1))
    # mean of 512*8 squared unit Gaussians: s.e. sqrt(2/4096) = 0.022; 5 s.e.
    assert abs(loss.item() - 1.0) < 0.11
    again = dsm_loss(zero_net, z0, sde, mask, torch.Generator().manual_seed(1))
    assert torch.equal(loss, again)


def test_dsm_loss_gradients_and_shape_errors() -> None:
    sde = VPSDE()
    lin = torch.nn.Linear(4, 4)
    net = lambda z, t: lin(z)  # noqa: E731
    mask = make_transform("freq", 8, 2).mask()
    z0 = torch.randn(8, 5, 4) * mask
    loss = dsm_loss(net, z0, sde, mask)
    loss.backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
    with pytest.raises(ValueError, match=r"z0 must have shape \(B, T, C\)"):
        dsm_loss(net, z0[0], sde, mask)
    with pytest.raises(ValueError, match=r"mask must have shape \(T, C\) = \(5, 4\)"):
        dsm_loss(net, z0, sde, mask[:4])


def test_small_t_fraction_moves_training_draws_to_low_noise() -> None:
    """With small_t_fraction = 1 the draws of t are log-uniform on [t_eps, 1]: 60% below 0.01
    (log(0.01/1e-5)/log(1/1e-5) = 3/5), where uniform draws put 1%; 0 keeps the old stream."""
    sde = VPSDE()
    seen: list[torch.Tensor] = []

    def net(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return torch.zeros_like(z)

    z0 = torch.zeros(20000, 2, 1)
    mask = torch.ones(2, 1)
    g0, g1 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    dsm_loss(net, z0, sde, mask, generator=g0)
    dsm_loss(net, z0, sde, mask, generator=g1, small_t_fraction=0.0)
    assert torch.equal(seen[0], seen[1])
    dsm_loss(net, z0, sde, mask, generator=torch.Generator().manual_seed(0), small_t_fraction=1.0)
    low = float((seen[2] < 0.01).float().mean())
    assert abs(low - 0.6) < 0.02  # 5.8 s.e. at 20,000 draws and float(seen[2].min()) >= sde.t_eps and float(seen[2].max()) <= 1.0
    assert float((seen[0] < 0.01).float().mean()) < 0.02
