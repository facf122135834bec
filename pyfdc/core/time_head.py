"""A local time-domain refinement of the transformer's noise prediction (``ModelConfig.time_head``).

The frequency-domain transformer gets the data's power spectrum right but not its sparsity: real series
change slowly and then jump (an ECG's QRS), so their increments are heavy-tailed, while the samples spread
the same power evenly in time (the suite's ECG: the same RMS increment, 1.7x the mean absolute one). A
jump at time tau is a phase ramp ``exp(-i k w tau)`` over every frequency token, a relation attention over
tokens must learn for each k; in the time domain it is one local feature. So the head maps the noisy
tokens ``z`` and the transformer's ``eps`` to the time domain (the token transform is an isometry: white
noise in tokens is white noise in time), runs a few dilated 1-D convolutions conditioned on ``t``, and
adds their output, mapped back to tokens, to ``eps``. The last convolution starts at zero, so a fresh
head leaves the transformer's prediction unchanged.

For series up to :data:`MATMUL_MAX_N` steps the maps between tokens and time are two small real matrices
(the transform applied to unit vectors), so the head is a chain of matmuls and convolutions that
``torch.compile`` takes whole and that costs one kernel each at batch 1; longer series use the FFT.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TimeHead", "DILATIONS", "KERNEL", "MATMUL_MAX_N"]

MATMUL_MAX_N = 1024   # two (N x ~N) float matrices: 8 MB at N = 1024
KERNEL = 5
DILATIONS: tuple[int, ...] = (1, 2, 4, 1)   # receptive field 1 + 4 * 8 = 33 time steps


class TimeHead(nn.Module):
    """``(eps (B, T, C), z (B, T, C), t_features (B, d)) -> eps + to_tokens(conv(...)) * mask``.

    ``channels`` = M, the series' channels; ``width`` the convolutions' channels. The token transform
    (which has no parameters) is attached by :class:`~pyfdc.core.model.DiffusionModel`.
    """

    def __init__(self, channels: int, width: int, d_model: int) -> None:
        super().__init__()
        pad = [d * (KERNEL // 2) for d in DILATIONS]
        self.convs = nn.ModuleList(
            nn.Conv1d(2 * channels if j == 0 else width, width, KERNEL, dilation=d, padding=p)
            for j, (d, p) in enumerate(zip(DILATIONS, pad)))
        self.film = nn.Linear(d_model, 2 * width * len(DILATIONS))
        self.out = nn.Conv1d(width, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.transform: Any = None
        self.parts = 0   # token columns per channel (2: real and imaginary parts; 1: time or chart tokens)

    def attach(self, transform: Any) -> None:
        """Use ``transform`` (a :class:`~pyfdc.core.spectral.TokenTransform`) between tokens and time: for
        ``N <= MATMUL_MAX_N`` as two matrices, ``from_time (N, P·T)`` and ``to_time (P·T, N)`` with ``P``
        token columns per channel (non-persistent buffers: they stay out of checkpoints, and are made again
        in float64 and rounded once whenever the head moves to another dtype or device)."""
        self.transform = transform
        self.parts = transform.token_dim // transform.m
        self._build_bases()

    def _build_bases(self) -> None:
        tr = self.transform
        if tr.n > MATMUL_MAX_N:
            self.to_time = self.from_time = None
            return
        one = type(tr)(tr.n, 1)   # every channel maps alike: the one-channel transform's matrices
        T, P, N = one.num_tokens, one.token_dim, one.n
        unit = torch.eye(P * T, dtype=torch.float64).reshape(P * T, P, T).transpose(1, 2)   # (P·T, T, P)
        to_time = one._from_tokens(unit)[..., 0]                                            # (P·T, N)
        from_time = one._to_tokens(torch.eye(N, dtype=torch.float64)[..., None])            # (N, T, P)
        like = {"dtype": self.film.weight.dtype, "device": self.film.weight.device}
        self.register_buffer("to_time", to_time.to(**like), persistent=False)
        self.register_buffer("from_time", from_time.transpose(1, 2).reshape(N, P * T).to(**like), persistent=False)

    def _apply(self, fn: Any, recurse: bool = True) -> "TimeHead":
        super()._apply(fn, recurse)
        if self.transform is not None:
            self._build_bases()
        return self

    def _series(self, y: Tensor) -> Tensor:
        """Tokens ``(B, T, P·M)`` -> series ``(B, M, N)``."""
        B, T, _ = y.shape
        if self.to_time is None:
            return self.transform._from_tokens(y).transpose(1, 2)
        cols = y.reshape(B, T, self.parts, -1).permute(0, 3, 2, 1).reshape(B, -1, self.parts * T)   # (B, M, P·T)
        return cols @ self.to_time

    def _tokens(self, x: Tensor) -> Tensor:
        """Series ``(B, M, N)`` -> tokens ``(B, T, P·M)``."""
        if self.from_time is None:
            return self.transform._to_tokens(x.transpose(1, 2).contiguous())
        B, M, _ = x.shape
        return (x @ self.from_time).reshape(B, M, self.parts, -1).permute(0, 3, 2, 1).reshape(B, -1, self.parts * M)

    def forward(self, eps: Tensor, z: Tensor, t_features: Tensor, mask: Tensor) -> Tensor:
        if self.transform is None:
            raise RuntimeError("TimeHead has no token transform: build the model through DiffusionModel")
        x = self._series(torch.cat([z, eps], dim=0))                                          # (2B, M, N)
        B = eps.shape[0]
        x = torch.cat([x[:B], x[B:]], dim=1)                                                  # (B, 2M, N)
        film = self.film(t_features).view(B, len(self.convs), 2, -1, 1)                    # (B, L, 2, W, 1)
        h = x
        for j, (conv, d) in enumerate(zip(self.convs, DILATIONS)):
            # compiled: one fused copy + one matmul (the library's dilated convolution is its slow path there)
            u = (_conv(h, conv, d) if torch.compiler.is_compiling() else conv(h)) * (1 + film[:, j, 0]) + film[:, j, 1]
            h = F.gelu(u) if j == 0 else h + F.gelu(u)
        out = _pointwise(h, self.out) if torch.compiler.is_compiling() else self.out(h)
        return eps + self._tokens(out) * mask


def _conv(h: Tensor, conv: nn.Conv1d, dilation: int) -> Tensor:
    """``conv(h)`` for ``h (B, C_in, N)`` as one matmul over the ``KERNEL`` shifted copies of ``h``, for
    ``torch.compile``: it fuses the copies into one loop, while the library's dilated convolution runs its
    slow path inside a compiled graph (~160 us per call at batch 1 on the shipped model's sizes)."""
    n, pad = h.shape[-1], dilation * (KERNEL // 2)
    hp = F.pad(h, (pad, pad))
    cols = torch.cat([hp[..., j * dilation:j * dilation + n] for j in range(KERNEL)], dim=1)   # (B, K·C_in, N)
    w = conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1)                          # (C_out, K·C_in)
    return torch.matmul(w, cols) + conv.bias[:, None]


def _pointwise(h: Tensor, conv: nn.Conv1d) -> Tensor:
    """``conv(h)`` for a kernel-1 ``conv`` as one matmul, for ``torch.compile`` (inside a compiled graph the
    library's convolution is an external call to its slow path)."""
    return torch.matmul(conv.weight[:, :, 0], h) + conv.bias[:, None]
