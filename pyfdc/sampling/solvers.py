"""Reverse-time solvers over an ``EpsFn`` and per-sample seeded noise (the user-facing loop is
:class:`pyfdc.sampling.sampler.Sampler`).

Both samplers walk a grid ``1 = t_0 > ... > t_steps = t_eps``, evaluate the noise predictor at
``t_0..t_{steps-1}`` (``steps`` evaluations) and end at ``t_eps``. Euler–Maruyama uses the uniform grid
``t_i = 1 - i (1 - t_eps) / steps``; DDIM defaults to a quadratic grid (finer near ``t = 0``).

* :func:`euler_maruyama`: the reverse VP-SDE ``dz = [-1/2 beta z - beta score] dt + sqrt(beta) dW``
  integrated backwards, ``score = -eps_hat / sigma``; the last step returns the mean (no noise).
* :func:`ddim`: deterministic DDIM (eta = 0), i.e. a first-order solver of the probability-flow ODE:
  ``z_s = alpha_s x0_hat + sigma_s eps_hat`` with ``x0_hat = (z_t - sigma_t eps_hat) / alpha_t``.
* :func:`dpm_solver_2m`: DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Alg. 2): the same ODE in
  data prediction, second order in ``h = lambda_s - lambda_t`` (``lambda = log(alpha / sigma)``) by
  a multistep correction from the previous step's ``x0_hat``; first order on the first and last step.

Predictions are multiplied by the mask and noise is masked, so pinned coordinates stay exactly 0.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from pyfdc.core.sde import VPSDE

__all__ = ["EpsFn", "NoiseStream", "euler_maruyama", "ddim", "dpm_solver_2m", "solve", "SAMPLING_METHODS"]

EpsFn = Callable[[Tensor, Tensor, int], Tensor]  # (z (B,T,C), t (B,), step i) -> eps_hat (B,T,C)
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
_COMPILED: "weakref.WeakKeyDictionary[torch.nn.Module, Callable]" = weakref.WeakKeyDictionary()


def network_eps_fn(net: torch.nn.Module, compile: bool = False, precision: str = "fp32") -> EpsFn:
    """``eps_fn(z, t, i) = net(z, t)``, optionally compiled (one compiled net per network, reused) and/or
    under bfloat16 autocast (output cast back to ``z``'s dtype)."""
    fn: Callable = net
    if compile:
        fn = _COMPILED.get(net)
        if fn is None:
            fn = _COMPILED[net] = torch.compile(net, fullgraph=True, dynamic=False)
    if precision == "bf16":
        def run(z: Tensor, t: Tensor, i: int) -> Tensor:
            with torch.autocast(z.device.type, dtype=torch.bfloat16):
                return fn(z, t).to(z.dtype)
        return run
    return lambda z, t, i: fn(z, t)
SAMPLING_METHODS: tuple[str, ...] = ("em", "ddim", "dpm2m")
TIME_SCHEDULES: tuple[str, ...] = ("uniform", "quadratic")

_MASK64 = (1 << 64) - 1


SEED_LIMIT = 2**63  # seeds are mixed modulo 2^64 (_sample_seed), so larger ones would alias smaller ones


def check_run_ids(seed: Any, sample_offset: Any) -> None:
    """The one check of a sampling run's ``seed`` (an int in [0, 2^63)) and ``sample_offset`` (an int
    >= 0), shared by every sampler and the CLI."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
    if isinstance(sample_offset, bool) or not isinstance(sample_offset, int) or sample_offset < 0:
        raise ValueError(f"sample_offset must be an int >= 0, got {sample_offset!r}")


def _sample_seed(seed: int, sample_id: int) -> int:
    """Well-mixed 63-bit seed for sample ``sample_id`` of run ``seed`` (splitmix64 finaliser)."""
    x = (seed * 0x9E3779B97F4A7C15 + sample_id * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) >> 1


class NoiseStream:
    """Per-sample seeded Gaussian noise: sample ``j`` gets the same draws whatever batch it is in.

    Each sample owns a ``torch.Generator`` seeded from ``(seed, j)``; draws are produced ``chunk`` at a
    time per sample (so a step costs one slice, and ``B`` RNG calls happen once per ``chunk`` draws).

    Args:
        seed: run seed.
        sample_ids: ``(B,)`` integer global sample ids.
        shape: ``(T, C)`` of one draw.
        mask: ``(T, C)``; draws are multiplied by it and take its device and dtype.
        chunk: draws generated per refill. Part of the stream's definition (the values depend on it),
            so streams that must agree use the same ``chunk``; every pyfdc sampler uses the default.
    """

    def __init__(
        self, seed: int, sample_ids: Tensor, shape: tuple[int, int], mask: Tensor, chunk: int = 32
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        ids = torch.as_tensor(sample_ids)
        if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"sample_ids must be a 1-D integer tensor (B,), got {ids.dtype} {tuple(ids.shape)}")
        shape = (int(shape[0]), int(shape[1]))
        if tuple(mask.shape) != shape:
            raise ValueError(f"mask must have shape {shape} (= shape), got {tuple(mask.shape)}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive int, got {chunk!r}")
        self.seed, self.shape, self.chunk = seed, shape, chunk
        self.sample_ids = ids.to("cpu", torch.int64)
        self.mask = mask
        self.draws = 0
        self._gens = []
        for j in self.sample_ids.tolist():
            g = torch.Generator(device=mask.device)
            g.manual_seed(_sample_seed(seed, j))
            self._gens.append(g)
        self._buf: Tensor | None = None  # (chunk, B, T, C)
        self._k = chunk

    def _refill(self) -> None:
        size = (self.chunk, *self.shape)
        dev, dt = self.mask.device, self.mask.dtype
        if not self._gens:
            self._buf = torch.empty((self.chunk, 0, *self.shape), device=dev, dtype=dt)
        else:
            rows = [torch.randn(size, generator=g, device=dev, dtype=dt) for g in self._gens]
            self._buf = torch.stack(rows, dim=1).mul_(self.mask)  # fresh tensor: old draws stay valid
        self._k = 0

    def __call__(self) -> Tensor:
        """Next ``(B, T, C)`` draw, masked."""
        if self._k == self.chunk:
            self._refill()
        assert self._buf is not None
        out = self._buf[self._k]
        self._k += 1
        self.draws += 1
        return out


def _check_run(z_init: Tensor, mask: Tensor, steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not isinstance(z_init, Tensor) or z_init.dim() != 3:
        raise ValueError(f"z_init must have shape (B, T, C), got {tuple(getattr(z_init, 'shape', ()))}")
    if mask.dim() != 2 or tuple(mask.shape) != tuple(z_init.shape[1:]):
        raise ValueError(f"mask must have shape (T, C) = {tuple(z_init.shape[1:])}, got {tuple(mask.shape)}")


def _grid(sde: VPSDE, steps: int, schedule: str = "uniform") -> list[float]:
    """``steps + 1`` times from 1 down to ``t_eps``: uniform, or quadratic (``t_eps + (1 - t_eps) u^2``)."""
    if schedule not in TIME_SCHEDULES:
        raise ValueError(f"schedule must be one of {TIME_SCHEDULES}, got {schedule!r}")
    span = 1.0 - sde.t_eps
    power = 1 if schedule == "uniform" else 2
    return [1.0] + [sde.t_eps + span * (1.0 - i / steps) ** power for i in range(1, steps)] + [sde.t_eps]


def _start(sde: VPSDE, z_init: Tensor, mask: Tensor, steps: int,
           schedule: str) -> tuple[list[float], Tensor, Tensor, Tensor]:
    """Checked run start: the grid, its times as a tensor, the mask and ``z_init * mask``."""
    _check_run(z_init, mask, steps)
    ts = _grid(sde, steps, schedule)
    t_all = torch.tensor(ts[:-1], device=z_init.device, dtype=z_init.dtype)
    mask = mask.to(device=z_init.device, dtype=z_init.dtype)
    return ts, t_all, mask, z_init * mask


def _steps_iter(steps: int, progress: bool, desc: str) -> Iterable[int]:
    if not progress:
        return range(steps)
    from tqdm.auto import tqdm

    return tqdm(range(steps), desc=desc, unit="step", leave=False, dynamic_ncols=True)


@torch.no_grad()
def euler_maruyama(
    eps_fn: EpsFn,
    sde: VPSDE,
    z_init: Tensor,
    mask: Tensor,
    steps: int,
    noise: Callable[[], Tensor],
    progress: bool = False,
) -> Tensor:
    """Euler–Maruyama on the reverse VP-SDE from ``t = 1`` to ``t_eps``.

    Args:
        eps_fn: noise predictor, called once per step as ``eps_fn(z, t, i)`` with ``t (B,)``.
        z_init: ``(B, T, C)`` start at ``t = 1`` (usually the noise stream's first draw).
        mask: ``(T, C)`` free coordinates.
        steps: number of steps (= network evaluations).
        noise: returns the next ``(B, T, C)`` masked standard-normal draw; called ``steps - 1`` times
            (the final step returns the mean without noise).

    Returns:
        ``(B, T, C)`` samples at ``t_eps``.
    """
    ts, t_all, mask, z = _start(sde, z_init, mask, steps, "uniform")
    b = z_init.shape[0]
    for i in _steps_iter(steps, progress, "EM"):
        t, dt = ts[i], ts[i] - ts[i + 1]
        beta = sde.beta_float(t)
        sigma = sde.marginal_float(t)[1]
        eps = eps_fn(z, t_all[i].expand(b), i)
        # z <- (1 + beta dt / 2) z - (beta dt / sigma) eps [+ sqrt(beta dt) xi]
        z = z.mul(1.0 + 0.5 * beta * dt).addcmul_(eps, mask, value=-beta * dt / sigma)
        if i < steps - 1:
            z.add_(noise(), alpha=math.sqrt(beta * dt))
    return z


@torch.no_grad()
def ddim(
    eps_fn: EpsFn,
    sde: VPSDE,
    z_init: Tensor,
    mask: Tensor,
    steps: int,
    progress: bool = False,
    schedule: str = "quadratic",
) -> Tensor:
    """Deterministic DDIM (probability-flow, first order in ``sigma/alpha``) from ``t = 1`` to ``t_eps``.

    ``z_init (B, T, C)``, ``mask (T, C)``; ``steps`` network evaluations. Returns ``(B, T, C)``.
    ``schedule="quadratic"`` (default, as in Song et al.'s DDIM) spends more steps near ``t = 0``, where
    the first-order error of DDIM concentrates (it shrinks low-variance directions); ``"uniform"``
    uses the same grid as :func:`euler_maruyama`.
    """
    ts, t_all, mask, z = _start(sde, z_init, mask, steps, schedule)
    b = z_init.shape[0]
    for i in _steps_iter(steps, progress, "DDIM"):
        a_t, s_t = sde.marginal_float(ts[i])
        a_s, s_s = sde.marginal_float(ts[i + 1])
        eps = eps_fn(z, t_all[i].expand(b), i)
        z = z.mul(a_s / a_t).addcmul_(eps, mask, value=s_s - a_s * s_t / a_t)
    return z


@torch.no_grad()
def dpm_solver_2m(
    eps_fn: EpsFn,
    sde: VPSDE,
    z_init: Tensor,
    mask: Tensor,
    steps: int,
    progress: bool = False,
    schedule: str = "quadratic",
) -> Tensor:
    """DPM-Solver++(2M), deterministic, from ``t = 1`` to ``t_eps``; ``steps`` network evaluations.

    ``z_init (B, T, C)``, ``mask (T, C)``; returns ``(B, T, C)``. With ``x0_i`` the data prediction at
    ``t_i`` and ``h_i = lambda_{i+1} - lambda_i``: ``z_{i+1} = (sigma_{i+1}/sigma_i) z_i - alpha_{i+1}
    expm1(-h_i) D_i`` with ``D_i = x0_i`` (first and last step) or ``(1 + 1/(2 r)) x0_i - 1/(2 r) x0_{i-1}``,
    ``r = h_{i-1} / h_i``. The last step is first order because ``h`` there is large and the
    extrapolation from far noisier ``x0`` estimates would amplify their error (Lu et al., "lower
    order final").
    """
    ts, t_all, mask, z = _start(sde, z_init, mask, steps, schedule)
    b = z_init.shape[0]
    coef = [sde.marginal_float(t) for t in ts]
    lam = [math.log(a) - math.log(s) for a, s in coef]
    x0_prev: Tensor | None = None
    h_prev = 0.0
    for i in _steps_iter(steps, progress, "DPM++2M"):
        (a_t, s_t), (a_s, s_s) = coef[i], coef[i + 1]
        h = lam[i + 1] - lam[i]
        eps = eps_fn(z, t_all[i].expand(b), i)
        x0 = (z - s_t * eps * mask) / a_t
        if x0_prev is None or i == steps - 1:
            d = x0
        else:
            r = h_prev / h
            d = x0 * (1.0 + 0.5 / r) - x0_prev * (0.5 / r)
        z = z.mul(s_s / s_t).add_(d, alpha=-a_s * math.expm1(-h))
        x0_prev, h_prev = x0, h
    return z * mask


def solve(method: str, eps_fn: EpsFn, sde: VPSDE, z_init: Tensor, mask: Tensor, steps: int,
          noise: Callable[[], Tensor], progress: bool = False, schedule: str = "quadratic") -> Tensor:
    """Run solver ``method`` (one of ``SAMPLING_METHODS``); ``noise`` is used by ``em`` only and
    ``schedule`` by the deterministic solvers."""
    if method == "em":
        return euler_maruyama(eps_fn, sde, z_init, mask, steps, noise, progress=progress)
    if method == "ddim":
        return ddim(eps_fn, sde, z_init, mask, steps, progress=progress, schedule=schedule)
    if method == "dpm2m":
        return dpm_solver_2m(eps_fn, sde, z_init, mask, steps, progress=progress, schedule=schedule)
    raise ValueError(f"method must be one of {SAMPLING_METHODS}, got {method!r}")

