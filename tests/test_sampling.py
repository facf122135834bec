"""Samplers on a Gaussian with a closed-form score, NoiseStream invariance, Sampler and DiffusionModel."""
from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from pyfdc.core.model import DiffusionModel
from pyfdc.sampling.sampler import Sampler
from pyfdc.sampling.solvers import NoiseStream, ddim, dpm_solver_2m, euler_maruyama
from pyfdc.core.score_net import ModelConfig, ScoreTransformer
from pyfdc.core.sde import VPSDE
from pyfdc.core.spectral import TokenTransform, make_transform

SDE = VPSDE()
N, M = 8, 2


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Thousands of tiny ops per test: intra-op threads only add contention on a shared CPU."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
D = N * M


def _gaussian() -> tuple[torch.Tensor, torch.Tensor]:
    """Data law N(mu, Sigma) on (N, M) series: AR(1) in time (rho 0.8) x correlated channels."""
    tt = torch.arange(N, dtype=torch.float64)
    ar = 0.8 ** (tt[:, None] - tt[None, :]).abs()
    chan = torch.tensor([[1.0, 0.3], [0.3, 0.25]], dtype=torch.float64)
    sigma = torch.kron(ar, chan)  # row-major (time, channel) = reshape(N, M) order
    mu = torch.stack([torch.sin(tt), 0.5 * torch.cos(tt)], dim=-1).reshape(D)
    return mu, sigma


def _exact_eps(tr: TokenTransform, mu: torch.Tensor, sigma: torch.Tensor) -> Callable:
    """eps*(z, t) = sigma_t (alpha_t^2 Sigma + sigma_t^2 I)^{-1} (x - alpha_t mu), mapped through ``tr``.

    ``tr`` is orthogonal onto the free token coordinates, so the token-space noise predictor is the
    data-space one mapped by ``tr``.
    """
    lam, vec = torch.linalg.eigh(sigma)

    def eps_fn(z: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        a, s = SDE.marginal(t)
        x = tr.from_tokens(z).reshape(len(z), D)
        p = (x - a[:, None] * mu) @ vec
        p = p * (s[:, None] / (a[:, None] ** 2 * lam + s[:, None] ** 2))
        return tr.to_tokens((p @ vec.T).reshape(-1, N, M))

    return eps_fn


@pytest.mark.parametrize("kind", ["freq", "time"])
@pytest.mark.parametrize(("method", "steps"), [("em", 1000), ("ddim", 200), ("dpm2m", 50)])
def test_exact_score_recovers_gaussian(kind: str, method: str, steps: int) -> None:
    s = 2000
    mu, sigma = _gaussian()
    tr = make_transform(kind, N, M)
    mask = tr.mask(dtype=torch.float64)
    stream = NoiseStream(0, torch.arange(s), (tr.num_tokens, tr.token_dim), mask)
    eps_fn = _exact_eps(tr, mu, sigma)
    z0 = stream()
    if method == "em":
        z = euler_maruyama(eps_fn, SDE, z0, mask, steps, stream)
    elif method == "ddim":
        z = ddim(eps_fn, SDE, z0, mask, steps)
    else:
        z = dpm_solver_2m(eps_fn, SDE, z0, mask, steps)
    assert torch.equal(z[:, mask == 0], torch.zeros_like(z[:, mask == 0]))  # samples stay real
    x = tr.from_tokens(z).reshape(s, D)
    var = sigma.diagonal()
    # Sampling error: s.e. of each mean is sqrt(Sigma_ii / S); of each covariance entry
    # sqrt((Sigma_ii Sigma_jj + Sigma_ij^2) / S). 5 s.e. over 16 means / 136 entries: p < 1e-4 under
    # pure sampling error; discretisation bias (EM 1000 steps, DDIM 200 quadratic steps) measured < 1.5 s.e.
    se_mean = (var / s).sqrt()
    se_cov = ((var[:, None] * var[None, :] + sigma.square()) / s).sqrt()
    assert ((x.mean(0) - mu).abs() / se_mean).max() < 5
    assert ((torch.cov(x.T) - sigma).abs() / se_cov).max() < 5


@pytest.mark.parametrize("solver", [ddim, dpm_solver_2m])
def test_deterministic_solvers_transport_point_mass_exactly(solver: Callable) -> None:
    # For data = delta(mu), eps* = (z - alpha mu) / sigma and DDIM keeps z_t = alpha_t mu + sigma_t e
    # exactly; so does DPM-Solver++(2M), whose x0 predictions all equal mu (the 2M correction vanishes).
    tr = make_transform("freq", N, M)
    mask = tr.mask(dtype=torch.float64)
    mu_z = tr.to_tokens(torch.randn(1, N, M, dtype=torch.float64))

    def eps_fn(z: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        a, s = SDE.marginal(t)
        return (z - a[:, None, None] * mu_z) / s[:, None, None]

    z1 = torch.randn(5, tr.num_tokens, tr.token_dim, dtype=torch.float64) * mask
    a1, s1 = SDE.marginal_float(1.0)
    ae, se = SDE.marginal_float(SDE.t_eps)
    for steps in (1, 2, 7, 50):
        for schedule in ("uniform", "quadratic"):
            z = solver(eps_fn, SDE, z1, mask, steps, schedule=schedule)
            expected = ae * mu_z + se * (z1 - a1 * mu_z) / s1
            torch.testing.assert_close(z, expected, rtol=0, atol=1e-10)  # float64 round-off over <= 50 steps


def test_dpm_solver_2m_is_second_order() -> None:
    """On a Gaussian with the exact score, halving the steps of DPM++(2M) shrinks its error to a
    solver converged at 2,000 steps by ~4x (second order), DDIM's only by ~2x (first order)."""
    mu, sigma = _gaussian()
    tr = make_transform("time", N, M)
    mask = tr.mask(dtype=torch.float64)
    z0 = NoiseStream(0, torch.arange(64), (tr.num_tokens, tr.token_dim), mask)()
    eps_fn = _exact_eps(tr, mu, sigma)
    ref = dpm_solver_2m(eps_fn, SDE, z0, mask, 2000)

    def err(solver: Callable, steps: int) -> float:
        return float((solver(eps_fn, SDE, z0, mask, steps) - ref).norm())

    ratio_2m = err(dpm_solver_2m, 20) / err(dpm_solver_2m, 40)
    ratio_ddim = err(ddim, 20) / err(ddim, 40)
    assert ratio_2m > 3.0 and ratio_ddim < 2.6, (ratio_2m, ratio_ddim)


def test_euler_maruyama_step_formula_and_noise_use() -> None:
    # Two steps by hand: t0 = 1, t1 = (1 + t_eps) / 2, t2 = t_eps; noise only after the first step.
    mask = torch.ones(3, 2, dtype=torch.float64)
    z0 = torch.randn(4, 3, 2, dtype=torch.float64)
    xi = torch.randn(4, 3, 2, dtype=torch.float64)
    calls: list[tuple[float, int]] = []

    def eps_fn(z: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        assert t.shape == (4,) and bool((t == t[0]).all())
        calls.append((t[0].item(), i))
        return 0.5 * z

    draws = []

    def noise() -> torch.Tensor:
        draws.append(1)
        return xi

    z = euler_maruyama(eps_fn, SDE, z0, mask, 2, noise)
    t0, t1, t2 = 1.0, 1.0 - (1.0 - SDE.t_eps) / 2, SDE.t_eps
    assert [c[1] for c in calls] == [0, 1] and calls[0][0] == pytest.approx(t0) and calls[1][0] == pytest.approx(t1)
    assert len(draws) == 1  # last step returns the mean

    def step(z: torch.Tensor, t: float, dt: float) -> torch.Tensor:
        beta, s = SDE.beta_float(t), SDE.marginal_float(t)[1]
        return z + (0.5 * beta * z - beta * 0.5 * z / s) * dt

    z1 = step(z0, t0, t0 - t1) + math.sqrt(SDE.beta_float(t0) * (t0 - t1)) * xi
    torch.testing.assert_close(z, step(z1, t1, t1 - t2), rtol=1e-12, atol=1e-12)  # float64 round-off


@pytest.mark.parametrize("sampler", ["em", "ddim", "dpm2m"])
def test_samplers_keep_pinned_zero_with_bad_eps(sampler: str) -> None:
    tr = make_transform("freq", 6, 1)
    mask = tr.mask()
    stream = NoiseStream(0, torch.arange(3), (tr.num_tokens, tr.token_dim), mask)
    garbage = lambda z, t, i: torch.ones_like(z)  # noqa: E731  (non-zero on pinned coordinates)
    z0 = stream() + (1 - mask)  # pinned coordinates of the start are ignored too
    if sampler == "em":
        z = euler_maruyama(garbage, SDE, z0, mask, 5, stream)
    else:
        z = (ddim if sampler == "ddim" else dpm_solver_2m)(garbage, SDE, z0, mask, 5)
    assert torch.equal(z[:, mask == 0], torch.zeros(3, 2))


def test_sampler_argument_errors() -> None:
    mask = torch.ones(3, 2)
    z0 = torch.zeros(2, 3, 2)
    eps = lambda z, t, i: z  # noqa: E731
    with pytest.raises(ValueError, match="steps must be a positive int"):
        ddim(eps, SDE, z0, mask, 0)
    with pytest.raises(ValueError, match=r"mask must have shape \(T, C\) = \(3, 2\)"):
        euler_maruyama(eps, SDE, z0, torch.ones(2, 3), 3, lambda: z0)
    with pytest.raises(ValueError, match=r"z_init must have shape \(B, T, C\)"):
        ddim(eps, SDE, z0[0], mask, 3)
    with pytest.raises(ValueError, match="schedule must be one of"):
        ddim(eps, SDE, z0, mask, 3, schedule="cosine")


def test_noise_stream_batch_invariance_and_masking() -> None:
    mask = make_transform("freq", 8, 1).mask()  # (5, 2), pinned Im DC / Im Nyquist
    full = NoiseStream(11, torch.arange(8), (5, 2), mask)
    part = NoiseStream(11, torch.tensor([5, 2]), (5, 2), mask)
    other_seed = NoiseStream(12, torch.arange(8), (5, 2), mask)
    a = torch.stack([full() for _ in range(70)])  # crosses two chunk boundaries (chunk = 32)
    b = torch.stack([part() for _ in range(70)])
    c = torch.stack([other_seed() for _ in range(70)])
    assert a.shape == (70, 8, 5, 2) and full.draws == 70
    assert torch.equal(b[:, 0], a[:, 5]) and torch.equal(b[:, 1], a[:, 2])
    assert torch.equal(a[..., mask == 0], torch.zeros(70, 8, 2))
    assert not torch.equal(a, c)
    free = a[..., mask == 1]
    # 70*8*8 = 4480 draws: moments within 5 s.e. (mean 0.015, variance 0.021)
    assert abs(free.mean().item()) < 0.075 and abs(free.var().item() - 1) < 0.11
    # distinct samples and distinct steps get distinct draws
    assert not torch.equal(a[0, 0], a[0, 1]) and not torch.equal(a[0, 0], a[1, 0])


def test_noise_stream_validation() -> None:
    mask = torch.ones(3, 2)
    with pytest.raises(ValueError, match="sample_ids must be a 1-D integer tensor"):
        NoiseStream(0, torch.zeros(2, 2, dtype=torch.int64), (3, 2), mask)
    with pytest.raises(ValueError, match="sample_ids must be a 1-D integer tensor"):
        NoiseStream(0, torch.zeros(2), (3, 2), mask)
    with pytest.raises(ValueError, match=r"mask must have shape \(3, 2\)"):
        NoiseStream(0, torch.arange(2), (3, 2), torch.ones(2, 3))
    with pytest.raises(TypeError, match="seed must be an int"):
        NoiseStream(0.5, torch.arange(2), (3, 2), mask)  # type: ignore[arg-type]


class _AffineScaler:
    """Stand-in for pyfdc.data.Standardizer: x_std = (x - 100) / 10."""

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 100.0) / 10.0

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * 10.0 + 100.0


def _model(kind: str = "freq", scaler: object | None = None) -> DiffusionModel:
    torch.manual_seed(0)
    tr = make_transform(kind, 10, 2)
    net = ScoreTransformer(ModelConfig(tr.num_tokens, tr.token_dim, d_model=16, n_layers=1, n_heads=2, d_ff=32))
    return DiffusionModel(net, tr, VPSDE(), scaler, meta={"dataset": "toy"})  # type: ignore[arg-type]


def test_diffusion_model_helpers() -> None:
    model = _model(scaler=_AffineScaler())
    tr = model.transform
    assert (model.num_tokens, model.token_dim) == (6, 4) and model.standardizer is model.scaler
    assert torch.equal(model.net.mask, tr.mask())  # net built without a mask gets the transform's
    x = 100 + 10 * torch.randn(3, 10, 2, dtype=torch.float64)
    z = model.data_to_tokens(x)
    torch.testing.assert_close(z, tr.to_tokens((x - 100) / 10))
    torch.testing.assert_close(model.tokens_to_data(z), x, rtol=0, atol=1e-10)  # float64 FFT round-off
    zf, t = z.float(), torch.full((3,), 0.5)
    out = model.eps(zf, t)
    assert torch.equal(out, model.net(zf, t))
    torch.testing.assert_close(model.score(zf, t), -out / SDE.marginal(t)[1][:, None, None])
    wrong = make_transform("time", 10, 2)
    with pytest.raises(ValueError, match=r"net expects \(T, C\) = \(6, 4\)"):
        DiffusionModel(model.net, wrong)
    with pytest.raises(TypeError, match="transform must be a TokenTransform"):
        DiffusionModel(model.net, "freq")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["em", "ddim"])
def test_sampler_units_determinism_and_batch_invariance(method: str) -> None:
    # float64 so that batch-size-dependent matmul blocking (~1e-7 in float32, amplified up to
    # 1/alpha(1) ~ 150x by the reverse SDE) stays far below the default float64 tolerance
    plain, scaled = _model(), _model(scaler=_AffineScaler())
    plain.net.double().train()
    scaled.net.double()
    sampler = Sampler(plain, method)
    x = sampler.sample(6, steps=12, batch_size=6, seed=3, progress=False)
    assert x.shape == (6, 10, 2) and x.dtype == torch.float64 and torch.isfinite(x).all()
    assert plain.net.training  # mode restored
    assert torch.equal(x, sampler.sample(6, steps=12, batch_size=6, seed=3, progress=False))
    assert not torch.equal(x, sampler.sample(6, steps=12, batch_size=6, seed=4, progress=False))
    # sample j gets the same trajectory whatever its batch; only matmul blocking may differ (default tol)
    torch.testing.assert_close(sampler.sample(6, steps=12, batch_size=4, seed=3, progress=False), x)
    torch.testing.assert_close(sampler.sample(6, steps=12, batch_size=1, seed=3, progress=False), x)
    xs = Sampler(scaled, method).sample(6, steps=12, batch_size=6, seed=3, progress=False)
    torch.testing.assert_close(xs, 10 * x + 100)  # original units
    z = sampler.sample_tokens(4, steps=12, seed=3, progress=False)
    mask = plain.transform.mask()
    assert torch.equal(z[:, mask == 0], torch.zeros(4, 4))


def test_sampler_validation_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    model = _model("time")
    with pytest.raises(ValueError, match="method must be one of"):
        Sampler(model, "heun")
    with pytest.raises(TypeError, match="model must be a DiffusionModel"):
        Sampler(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        Sampler(model).sample(0, progress=False)
    x = Sampler(model).sample(3, steps=3, batch_size=2, progress=True)
    assert x.shape == (3, 10, 2) and x.dtype == torch.float32
    assert "sampling (em)" in capsys.readouterr().err


def test_gaussian_check_has_power() -> None:
    """Negative control: 10 uniform DDIM steps shrink low-variance directions and the check sees it."""
    s = 2000
    mu, sigma = _gaussian()
    tr = make_transform("time", N, M)
    mask = tr.mask(dtype=torch.float64)
    z0 = NoiseStream(0, torch.arange(s), (tr.num_tokens, tr.token_dim), mask)()
    x = tr.from_tokens(ddim(_exact_eps(tr, mu, sigma), SDE, z0, mask, 10, schedule="uniform")).reshape(s, D)
    var = sigma.diagonal()
    se_cov = ((var[:, None] * var[None, :] + sigma.square()) / s).sqrt()
    assert ((torch.cov(x.T) - sigma).abs() / se_cov).max() > 5
