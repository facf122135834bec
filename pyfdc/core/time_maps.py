"""``TimeMaps``: a token transform's maps between tokens and time as two matrices, for compiled graphs.

Inside ``torch.compile`` an FFT is an opaque library call (at batch 1 about twice what two small matmuls
cost), so modules that go between tokens and the time domain on every step (the time-domain head, the
pinned-coordinate projection) keep the transform as matrices for series up to :data:`MATMUL_MAX_N` steps.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["TimeMaps", "MATMUL_MAX_N"]

MATMUL_MAX_N = 1024   # two (N x ~N) float matrices: 8 MB at N = 1024


class TimeMaps(nn.Module):
    """Tokens ``(B, T, P·M)`` <-> channels-first series ``(B, M, N)`` for a
    :class:`~pyfdc.core.spectral.TokenTransform`, with ``P`` token columns per channel.

    For ``N <= MATMUL_MAX_N`` the maps are ``to_time (P·T, N)`` and ``from_time (N, P·T)``: the one-channel
    transform applied to unit vectors (every channel maps alike), non-persistent buffers (they stay out of
    checkpoints) made in float64 and rounded once, again whenever the module moves to another dtype or device.
    Longer series (``to_time is None``) use the transform's FFT.
    """

    def __init__(self, transform: Any, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.transform = transform
        self.parts = transform.token_dim // transform.m
        self._build(dtype, device)

    def _build(self, dtype: torch.dtype, device: torch.device | str | None) -> None:
        tr = self.transform
        if tr.n > MATMUL_MAX_N:
            self.to_time = self.from_time = None
            return
        one = type(tr)(tr.n, 1)
        T, P, N = one.num_tokens, one.token_dim, one.n
        unit = torch.eye(P * T, dtype=torch.float64).reshape(P * T, P, T).transpose(1, 2)   # (P·T, T, P)
        to_time = one._from_tokens(unit)[..., 0]                                            # (P·T, N)
        from_time = one._to_tokens(torch.eye(N, dtype=torch.float64)[..., None])            # (N, T, P)
        self.register_buffer("to_time", to_time.to(dtype=dtype, device=device), persistent=False)
        self.register_buffer("from_time", from_time.transpose(1, 2).reshape(N, P * T).to(dtype=dtype, device=device),
                             persistent=False)

    def _apply(self, fn: Any, recurse: bool = True) -> "TimeMaps":
        super()._apply(fn, recurse)
        if self.to_time is not None:   # rebuilt from float64 at the new dtype and device
            self._build(self.to_time.dtype, self.to_time.device)
        return self

    def series(self, y: Tensor) -> Tensor:
        """Tokens ``y (B, T, P·M)`` -> series ``(B, M, N)``."""
        if self.to_time is None:
            return self.transform._from_tokens(y).transpose(1, 2)
        B, T, _ = y.shape
        cols = y.reshape(B, T, self.parts, -1).permute(0, 3, 2, 1).reshape(B, -1, self.parts * T)   # (B, M, P·T)
        return cols @ self.to_time

    def tokens(self, x: Tensor) -> Tensor:
        """Series ``x (B, M, N)`` -> tokens ``(B, T, P·M)``."""
        if self.from_time is None:
            return self.transform._to_tokens(x.transpose(1, 2).contiguous())
        B, M, _ = x.shape
        return (x @ self.from_time).reshape(B, M, self.parts, -1).permute(0, 3, 2, 1).reshape(B, -1, self.parts * M)
