"""Token transforms: isometry, round trips, pinned coordinates, layouts, white noise, errors."""
from __future__ import annotations

import math

import pytest
import torch

from pyfdc.core.spectral import (
    ChartTransform,
    HalfSpectrumTransform,
    IdentityTransform,
    TokenTransform,
    make_transform,
)

KINDS = ["freq", "time", "chart"]
NS = [1, 2, 3, 8, 9, 16]


def _rand(b: int, n: int, m: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, m, generator=g, dtype=dtype)


def _matrix(tr: TokenTransform) -> torch.Tensor:
    """``(N*M, T*C)`` matrix of the linear map x -> z (row i = tokens of the i-th basis series)."""
    eye = torch.eye(tr.n * tr.m, dtype=torch.float64).reshape(-1, tr.n, tr.m)
    return tr.to_tokens(eye).reshape(tr.n * tr.m, -1)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_mask(kind: str) -> None:
    for n in NS:
        tr = make_transform(kind, n, 3)
        assert tr.kind == kind and (tr.n, tr.m) == (n, 3)
        expected = {"freq": (n // 2 + 1, 6), "time": (n, 3), "chart": (n, 3)}[kind]
        assert (tr.num_tokens, tr.token_dim) == expected
        mask = tr.mask()
        assert mask.shape == expected and mask.dtype == torch.float32
        assert int(mask.sum()) == n * 3 == tr.num_free  # free coordinates = degrees of freedom
        assert tr.mask(dtype=torch.float64).dtype == torch.float64


def test_half_spectrum_mask_pins_dc_and_nyquist() -> None:
    odd, even = HalfSpectrumTransform(9, 2).mask(), HalfSpectrumTransform(8, 2).mask()
    assert torch.equal(odd[0], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert torch.equal(odd[1:], torch.ones(4, 4))  # no Nyquist bin for odd N
    assert torch.equal(even[0], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert torch.equal(even[-1], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert torch.equal(even[1:-1], torch.ones(3, 4))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("m", [1, 3])
def test_round_trip_and_parseval(kind: str, n: int, m: int) -> None:
    tr = make_transform(kind, n, m)
    x = _rand(5, n, m)
    z = tr.to_tokens(x)
    assert z.shape == (5, tr.num_tokens, tr.token_dim) and z.dtype == torch.float64
    # float64 FFT round-off is ~1e-16 per op; 1e-12 leaves room for N=16 sums.
    torch.testing.assert_close(tr.from_tokens(z), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(z.square().sum((1, 2)), x.square().sum((1, 2)), rtol=1e-12, atol=0)
    # pinned coordinates are exactly zero, not merely small
    assert torch.equal(z * (1 - tr.mask(dtype=z.dtype)), torch.zeros_like(z))


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_float32(kind: str) -> None:
    tr = make_transform(kind, 187, 2)
    x = _rand(4, 187, 2, dtype=torch.float32)
    z = tr.to_tokens(x)
    assert z.dtype == torch.float32
    torch.testing.assert_close(tr.from_tokens(z), x)  # default float32 tolerances
    torch.testing.assert_close(z.norm(), x.norm())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", NS)
def test_orthogonal_onto_free_coordinates(kind: str, n: int) -> None:
    tr = make_transform(kind, n, 2)
    a = _matrix(tr)  # (NM, TC)
    # rows orthonormal <=> isometry; 1e-12: float64 round-off only.
    torch.testing.assert_close(a @ a.T, torch.eye(n * 2, dtype=torch.float64), rtol=0, atol=1e-12)
    # the image is exactly the free coordinates: pinned columns vanish, free ones are spanned
    free = tr.mask(dtype=torch.float64).reshape(-1).bool()
    assert torch.equal(a[:, ~free], torch.zeros_like(a[:, ~free]))
    torch.testing.assert_close(a[:, free].T @ a[:, free], torch.eye(n * 2, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 7, 8])
def test_from_tokens_ignores_pinned_and_is_inverse_on_free(kind: str, n: int) -> None:
    tr = make_transform(kind, n, 2)
    z = torch.randn(3, tr.num_tokens, tr.token_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mask = tr.mask(dtype=z.dtype)
    x = tr.from_tokens(z)
    assert x.shape == (3, n, 2) and x.dtype == torch.float64 and not x.is_complex()
    assert torch.equal(x, tr.from_tokens(z * mask))  # pinned coordinates have no effect at all
    torch.testing.assert_close(tr.to_tokens(x), z * mask, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 6, 9, 16])
def test_half_spectrum_matches_full_dft_and_conjugate_symmetry(n: int) -> None:
    m = 2
    tr = HalfSpectrumTransform(n, m)
    x = _rand(3, n, m)
    z = tr.to_tokens(x)
    full = torch.fft.fft(x.to(torch.complex128), dim=1, norm="ortho")  # (B, N, M)
    w = torch.tensor([1.0 if k == 0 or 2 * k == n else math.sqrt(2.0) for k in range(n // 2 + 1)], dtype=torch.float64)
    half = torch.complex(z[..., :m], z[..., m:]) / w[:, None]
    torch.testing.assert_close(half, full[:, : n // 2 + 1], rtol=0, atol=1e-12)
    for k in range(1, n):  # the discarded half is the mirror image: X_{N-k} = conj(X_k)
        torch.testing.assert_close(full[:, n - k], full[:, k].conj(), rtol=0, atol=1e-12)
    # samples generated from arbitrary tokens are real and carry the same half spectrum
    zr = torch.randn(3, tr.num_tokens, 2 * m, dtype=torch.float64) * tr.mask(dtype=torch.float64)
    xr = tr.from_tokens(zr)
    spec = torch.fft.fft(xr.to(torch.complex128), dim=1, norm="ortho")
    torch.testing.assert_close(spec[:, : n // 2 + 1], torch.complex(zr[..., :m], zr[..., m:]) / w[:, None], rtol=0, atol=1e-12)


def test_chart_layout() -> None:
    n, m = 8, 2
    tr = ChartTransform(n, m)
    x = _rand(2, n, m)
    z = tr.to_tokens(x)
    spec = torch.fft.rfft(x, dim=1, norm="ortho")
    s2 = math.sqrt(2.0)
    # tokens 0..4: real parts of bins 0..4 (DC and Nyquist unscaled), 5..7: sqrt(2) Im of bins 1..3
    torch.testing.assert_close(z[:, 0], spec.real[:, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(z[:, 1:4], s2 * spec.real[:, 1:4], rtol=0, atol=1e-12)
    torch.testing.assert_close(z[:, 4], spec.real[:, 4], rtol=0, atol=1e-12)
    torch.testing.assert_close(z[:, 5:], s2 * spec.imag[:, 1:4], rtol=0, atol=1e-12)
    # the chart and the half spectrum hold the same numbers, rearranged
    h = HalfSpectrumTransform(n, m).to_tokens(x)
    free = HalfSpectrumTransform(n, m).mask(dtype=torch.float64).bool()
    assert torch.equal(torch.sort(h[:, free].reshape(2, -1)).values, torch.sort(z.reshape(2, -1)).values)


def test_identity_is_identity_and_copies() -> None:
    tr = IdentityTransform(5, 2)
    x = _rand(2, 5, 2)
    z = tr.to_tokens(x)
    assert torch.equal(z, x) and z.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [8, 9])
def test_white_noise_maps_to_white_noise(kind: str, n: int) -> None:
    m, s = 2, 20_000
    tr = make_transform(kind, n, m)
    x = _rand(s, n, m, dtype=torch.float64, seed=3)
    z = tr.to_tokens(x)
    free = tr.mask(dtype=torch.float64).bool()
    zf = z[:, free]  # (S, N*M) free coordinates
    cov = zf.T @ zf / s  # known zero mean
    # Entries of the empirical covariance of S unit Gaussians have s.e. <= sqrt(2/S) = 0.01
    # (diagonal; 1/sqrt(S) off-diagonal); 5 s.e. over <= 18^2 entries fails with prob. < 1e-4.
    tol = 5 * math.sqrt(2 / s)
    assert (cov - torch.eye(n * m, dtype=torch.float64)).abs().max() < tol
    # pinned coordinates carry no noise at all
    assert torch.equal(z[:, ~free], torch.zeros_like(z[:, ~free]))


@pytest.mark.parametrize("kind", KINDS)
def test_bad_inputs(kind: str) -> None:
    tr = make_transform(kind, 8, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, N=8, M=2\)"):
        tr.to_tokens(torch.zeros(8, 2))
    with pytest.raises(ValueError, match=r"N=7 vs 8"):
        tr.to_tokens(torch.zeros(1, 7, 2))
    with pytest.raises(ValueError, match=r"M=3 vs 2"):
        tr.to_tokens(torch.zeros(1, 8, 3))
    with pytest.raises(ValueError, match="NaN or Inf"):
        tr.to_tokens(torch.full((1, 8, 2), float("nan")))
    with pytest.raises(ValueError, match="NaN or Inf"):
        tr.from_tokens(torch.full((1, tr.num_tokens, tr.token_dim), float("inf")))
    with pytest.raises(TypeError, match="float32 or float64"):
        tr.to_tokens(torch.zeros(1, 8, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        tr.to_tokens([[0.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"z must have shape \(B, T="):
        tr.from_tokens(torch.zeros(1, tr.num_tokens + 1, tr.token_dim))


def test_make_transform_validation() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        make_transform("fourier", 8, 1)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n must be a positive int"):
            make_transform("freq", bad, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="m must be a positive int"):
        make_transform("time", 8, 0)
    assert make_transform("freq", 8, 2) == HalfSpectrumTransform(8, 2) != ChartTransform(8, 2)
