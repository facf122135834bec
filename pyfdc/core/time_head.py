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

from pyfdc.core.time_maps import MATMUL_MAX_N, TimeMaps

__all__ = ["TimeHead", "DILATIONS", "KERNEL", "MATMUL_MAX_N"]

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
        self.maps: TimeMaps | None = None   # tokens <-> time, attached with the transform

    def attach(self, transform: Any) -> None:
        """Use ``transform`` (a :class:`~pyfdc.core.spectral.TokenTransform`) between tokens and time: for
        ``N <= MATMUL_MAX_N`` as two matrices (:class:`~pyfdc.core.time_maps.TimeMaps`)."""
        self.maps = TimeMaps(transform, dtype=self.film.weight.dtype, device=self.film.weight.device)

    def forward(self, eps: Tensor, z: Tensor, t_features: Tensor, mask: Tensor) -> Tensor:
        if self.maps is None:
            raise RuntimeError("TimeHead has no token transform: build the model through DiffusionModel")
        x = self.maps.series(torch.cat([z, eps], dim=0))                                          # (2B, M, N)
        B = eps.shape[0]
        x = torch.cat([x[:B], x[B:]], dim=1)                                                  # (B, 2M, N)
        film = self.film(t_features).view(B, len(self.convs), 2, -1, 1)                    # (B, L, 2, W, 1)
        h = x
        for j, (conv, d) in enumerate(zip(self.convs, DILATIONS)):
            # compiled: one copy of the taps + one matmul (the library's dilated convolution is slow there)
            u = (_conv(h, conv, d) if torch.compiler.is_compiling() else conv(h)) * (1 + film[:, j, 0]) + film[:, j, 1]
            h = F.gelu(u) if j == 0 else h + F.gelu(u)
        out = _pointwise(h, self.out) if torch.compiler.is_compiling() else self.out(h)
        return eps + self.maps.tokens(out) * mask


def _conv(h: Tensor, conv: nn.Conv1d, dilation: int) -> Tensor:
    """``conv(h)`` for ``h (B, C_in, N)`` as one matmul over the ``KERNEL`` taps, for ``torch.compile``
    (inside a compiled graph the library's dilated convolution runs its slow path, ~160 us a call at batch 1
    on the shipped model's sizes). The taps are an overlapping strided view of the zero-padded input: that
    makes the compiler write the padded input once and copy the taps from it, where a concatenation of
    shifted slices gets fused with whatever produced ``h`` and recomputes it (a GELU) once per tap."""
    B, C, n = h.shape
    pad = dilation * (KERNEL // 2)
    hp = F.pad(h, (pad, pad))                                                                # (B, C_in, L)
    sb, sc, sn = hp.stride()   # as laid out (a compiler may pad rows); hp is fresh, so its offset is 0
    cols = torch.as_strided(hp, (B, C, KERNEL, n), (sb, sc, dilation * sn, sn), 0)
    w = conv.weight.reshape(conv.out_channels, -1)                            # (C_out, C_in·K), k fastest
    return torch.matmul(w, cols.reshape(B, C * KERNEL, n)) + conv.bias[:, None]


def _pointwise(h: Tensor, conv: nn.Conv1d) -> Tensor:
    """``conv(h)`` for a kernel-1 ``conv`` as one matmul, for ``torch.compile`` (inside a compiled graph the
    library's convolution is an external call to its slow path)."""
    return torch.matmul(conv.weight[:, :, 0], h) + conv.bias[:, None]
