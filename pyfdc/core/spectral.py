"""Isometric token transforms between time series ``(B, N, M)`` and model tokens ``(B, T, C)``.

Three layouts share one interface (:class:`TokenTransform`):

* ``"freq"`` (:class:`HalfSpectrumTransform`): ``T = N//2 + 1`` tokens of width ``C = 2M``,
  ``z_k = w_k [Re X_k || Im X_k]`` with ``X = rfft(x, dim=1, norm="ortho")`` and ``w_k = sqrt(2)``
  except at DC and Nyquist (even ``N``) where ``w_k = 1``. ``Im X_0`` (and ``Im X_{N/2}`` for even
  ``N``) are pinned at 0; :meth:`TokenTransform.mask` marks them.
* ``"time"`` (:class:`IdentityTransform`): ``T = N`` tokens of width ``M``, ``z = x``.
* ``"chart"`` (:class:`ChartTransform`): Crabbé et al.'s ``N`` tokens of width ``M``: the scaled real
  parts of bins ``0..N//2`` followed by the scaled imaginary parts of the free bins
  ``1..(N-1)//2``. Same information as ``"freq"``, twice the tokens.

All three are orthogonal maps onto their free coordinates: ``||x|| == ||z||``, and white noise in
time is white noise on the free token coordinates. ``from_tokens`` ignores pinned coordinates, so
its output is exactly real whatever the input.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "TokenTransform",
    "HalfSpectrumTransform",
    "IdentityTransform",
    "ChartTransform",
    "make_transform",
    "TRANSFORM_KINDS",
]

TRANSFORM_KINDS: tuple[str, ...] = ("freq", "time", "chart")
_SQRT2 = math.sqrt(2.0)


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_input(x: object, name: str, dims: tuple[int, int], labels: tuple[str, str]) -> Tensor:
    """Check ``x`` is a finite float32/float64 tensor of shape ``(B, *dims)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    expected = f"(B, {labels[0]}={dims[0]}, {labels[1]}={dims[1]})"
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    if x.shape[1] != dims[0] or x.shape[2] != dims[1]:
        raise ValueError(
            f"{name} must have shape {expected}, got {tuple(x.shape)} "
            f"({labels[0]}={x.shape[1]} vs {dims[0]}, {labels[1]}={x.shape[2]} vs {dims[1]})"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


class TokenTransform:
    """Isometry ``(B, N, M) <-> (B, T, C)`` with a ``(T, C)`` mask of free coordinates."""

    kind: str = ""
    n: int
    m: int
    num_tokens: int
    token_dim: int

    def __init__(self, n: int, m: int) -> None:
        self.n = _check_positive_int("n", n)
        self.m = _check_positive_int("m", m)

    def to_tokens(self, x: Tensor) -> Tensor:
        """Map time series ``x`` ``(B, N, M)`` to tokens ``(B, T, C)`` (pinned coordinates exactly 0)."""
        x = _check_input(x, "x", (self.n, self.m), ("N", "M"))
        return self._to_tokens(x)

    def from_tokens(self, z: Tensor) -> Tensor:
        """Map tokens ``z`` ``(B, T, C)`` back to real time series ``(B, N, M)``; pinned coords are ignored."""
        z = _check_input(z, "z", (self.num_tokens, self.token_dim), ("T", "C"))
        return self._from_tokens(z)

    def mask(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """``(T, C)`` tensor: 1 on free coordinates, 0 on pinned ones."""
        return torch.ones(self.num_tokens, self.token_dim, device=device, dtype=dtype)

    @property
    def num_free(self) -> int:
        """Number of free token coordinates (always ``N * M``)."""
        return self.n * self.m

    def _to_tokens(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _from_tokens(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, m={self.m})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and (self.n, self.m) == (other.n, other.m)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.n, self.m))


def _bin_weights(n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(N//2+1,)`` Parseval weights of the rfft bins: 1 at DC and Nyquist (even N), sqrt(2) elsewhere."""
    w = torch.full((n // 2 + 1,), _SQRT2, device=device, dtype=dtype)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w


class HalfSpectrumTransform(TokenTransform):
    """Half-spectrum tokens: ``(B, N, M) <-> (B, N//2+1, 2M)``, first ``M`` columns real parts."""

    kind = "freq"

    def __init__(self, n: int, m: int) -> None:
        super().__init__(n, m)
        self.num_tokens = n // 2 + 1
        self.token_dim = 2 * m

    def mask(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        out = torch.ones(self.num_tokens, self.token_dim, device=device, dtype=dtype)
        out[0, self.m :] = 0.0
        if self.n % 2 == 0:
            out[-1, self.m :] = 0.0
        return out

    def _to_tokens(self, x: Tensor) -> Tensor:
        spec = torch.fft.rfft(x, dim=1, norm="ortho")  # (B, N', M) complex
        w = _bin_weights(self.n, x.device, x.dtype)[:, None]
        im = spec.imag * w
        im[:, 0] = 0.0  # exactly zero, not merely ~1e-17
        if self.n % 2 == 0:
            im[:, -1] = 0.0
        return torch.cat([spec.real * w, im], dim=-1)

    def _from_tokens(self, z: Tensor) -> Tensor:
        w = _bin_weights(self.n, z.device, z.dtype)[:, None]
        re = z[..., : self.m] / w
        im = z[..., self.m :] / w
        im = im * self.mask(z.device, z.dtype)[:, self.m :]
        return torch.fft.irfft(torch.complex(re, im), n=self.n, dim=1, norm="ortho")


class IdentityTransform(TokenTransform):
    """Time-domain tokens: ``N`` tokens of width ``M``, ``z = x``."""

    kind = "time"

    def __init__(self, n: int, m: int) -> None:
        super().__init__(n, m)
        self.num_tokens = n
        self.token_dim = m

    def _to_tokens(self, x: Tensor) -> Tensor:
        return x.clone()

    def _from_tokens(self, z: Tensor) -> Tensor:
        return z.clone()


class ChartTransform(TokenTransform):
    """Crabbé et al.'s real chart: ``N`` tokens of width ``M``.

    Token ``k`` for ``k <= N//2`` is ``w_k Re X_k``; token ``N//2 + j`` for ``1 <= j <= (N-1)//2`` is
    ``sqrt(2) Im X_j``. No coordinate is pinned.
    """

    kind = "chart"

    def __init__(self, n: int, m: int) -> None:
        super().__init__(n, m)
        self.num_tokens = n
        self.token_dim = m
        self._n_half = n // 2 + 1
        self._n_im = (n - 1) // 2  # bins with a free imaginary part

    def _to_tokens(self, x: Tensor) -> Tensor:
        spec = torch.fft.rfft(x, dim=1, norm="ortho")
        w = _bin_weights(self.n, x.device, x.dtype)[:, None]
        im = spec.imag[:, 1 : 1 + self._n_im] * _SQRT2
        return torch.cat([spec.real * w, im], dim=1)

    def _from_tokens(self, z: Tensor) -> Tensor:
        w = _bin_weights(self.n, z.device, z.dtype)[:, None]
        re = z[:, : self._n_half] / w
        im = torch.zeros_like(re)
        im[:, 1 : 1 + self._n_im] = z[:, self._n_half :] / _SQRT2
        return torch.fft.irfft(torch.complex(re, im), n=self.n, dim=1, norm="ortho")


_KINDS: dict[str, type[TokenTransform]] = {
    "freq": HalfSpectrumTransform,
    "time": IdentityTransform,
    "chart": ChartTransform,
}


def make_transform(kind: str, n: int, m: int) -> TokenTransform:
    """Build the transform for ``kind`` in ``{"freq", "time", "chart"}`` and series shape ``(N=n, M=m)``."""
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"kind must be one of {TRANSFORM_KINDS}, got {kind!r}")
    return cls(n, m)
