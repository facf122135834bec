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
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TimeHead", "DILATIONS", "KERNEL"]

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

    def forward(self, eps: Tensor, z: Tensor, t_features: Tensor, mask: Tensor) -> Tensor:
        tr = self.transform
        if tr is None:
            raise RuntimeError("TimeHead has no token transform: build the model through DiffusionModel")
        x = torch.cat([tr._from_tokens(z), tr._from_tokens(eps)], dim=-1).transpose(1, 2)   # (B, 2M, N)
        film = self.film(t_features).view(x.shape[0], len(self.convs), 2, -1, 1)          # (B, L, 2, W, 1)
        h = x
        for j, conv in enumerate(self.convs):
            u = conv(h) * (1 + film[:, j, 0]) + film[:, j, 1]
            h = F.gelu(u) if j == 0 else h + F.gelu(u)
        delta = self.out(h).transpose(1, 2)                                                  # (B, N, M)
        return eps + tr._to_tokens(delta.contiguous()) * mask
