"""The data statistics training fits once, on the fit split, before the first step (used by :mod:`pyfdc.training.trainer`).

:func:`fit_data_stats` fits, in this order, on ``train_x[fit_idx]`` only (the validation split stays
unseen, the dataset's test split is never read):

* the per-channel :class:`~pyfdc.data.Standardizer` (time domain),
* the per-channel :class:`~pyfdc.core.support.SupportBounds` samplers keep,
* the :class:`~pyfdc.core.exact_structure.ExactStructure` (band limit, series norm, value grid) decoding imposes, if any,
* the :class:`~pyfdc.core.pinning.PinnedCoordinates` (``pinning="auto"`` with ``scaling="channel"`` only),
* the per-token-coordinate :class:`~pyfdc.core.token_scaler.TokenScaler` (``scaling="token"`` only),
* the :class:`~pyfdc.core.token_moments.TokenMoments` of the resulting model tokens (E2-CRF's gaussian
  cached output),

and returns them as one :class:`TrainDataStats` together with the model tokens of the fit and the
validation split. Nothing here draws random numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from torch import nn

    from pyfdc.data import Standardizer
    from pyfdc.core.model import DiffusionModel
    from pyfdc.core.pinning import PinnedCoordinates
    from pyfdc.core.sde import VPSDE
    from pyfdc.core.spectral import TokenTransform
    from pyfdc.core.exact_structure import ExactStructure
    from pyfdc.core.support import SupportBounds
    from pyfdc.core.token_moments import TokenMoments
    from pyfdc.core.token_scaler import TokenScaler

__all__ = ["TrainDataStats", "fit_data_stats"]


@dataclass(frozen=True)
class TrainDataStats:
    """Everything a training run fits on the fit split ``x_fit (n_fit, N, M)`` before optimising.

    ``standardizer``, ``bounds`` and ``exact`` (or ``None``) are per channel ``(M,)``; ``pins`` (or ``None``) marks ``(N, M)``
    coordinates constant over the fit split; ``token_scaler`` (or ``None``) and ``token_moments`` are per
    token coordinate ``(num_tokens, token_dim)`` of the transform.
    """

    standardizer: Standardizer
    bounds: SupportBounds
    pins: PinnedCoordinates | None
    token_scaler: TokenScaler | None
    token_moments: TokenMoments
    exact: ExactStructure | None = None

    def model(self, net: nn.Module, transform: TokenTransform, sde: VPSDE, meta: dict[str, Any]) -> DiffusionModel:
        """The :class:`~pyfdc.core.model.DiffusionModel` of ``net`` with these statistics (a copy of ``meta``)."""
        from pyfdc.core.model import DiffusionModel

        return DiffusionModel(net, transform, sde, self.standardizer, meta=dict(meta), token_scaler=self.token_scaler,
                              pins=self.pins, bounds=self.bounds, token_moments=self.token_moments,
                              exact=self.exact)


def _raw_tokens(x: np.ndarray, standardizer: Standardizer, pins: PinnedCoordinates | None,
                transform: TokenTransform) -> Tensor:
    """Series ``x (B, N, M)`` -> unscaled tokens ``(B, num_tokens, token_dim)`` in float64, fixed entries 0.

    Mirrors :meth:`~pyfdc.core.model.DiffusionModel.data_to_tokens`, but standardises in the data's own dtype
    first (as the shipped checkpoint was trained): going through ``data_to_tokens`` in float64 moves the
    tokens by ~6e-7 and so loses bit-reproducibility of earlier runs.
    """
    z = torch.as_tensor(standardizer.transform(x), dtype=torch.float64)
    if pins is not None:
        z = pins.remove(z)
    return transform.to_tokens(z) * transform.mask(dtype=torch.float64)


def _model_tokens(x: np.ndarray, standardizer: Standardizer, pins: PinnedCoordinates | None,
                  token_scaler: TokenScaler | None, transform: TokenTransform, device: torch.device) -> Tensor:
    """Series ``x (B, N, M)`` -> the tokens the network is trained on: ``(B, num_tokens, token_dim)`` float32 on
    ``device``, scaled by ``token_scaler`` when given, fixed entries 0. ``B = 0`` gives an empty batch."""
    if len(x) == 0:  # no validation split (val_fraction 0): an empty token batch, no FFT of nothing
        return torch.zeros((0, transform.num_tokens, transform.token_dim), device=device)
    z = _raw_tokens(x, standardizer, pins, transform)
    if token_scaler is not None:
        z = token_scaler.transform(z)
    return z.to(device=device, dtype=torch.float32) * transform.mask(device=device)


def fit_data_stats(train_x: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray, transform: TokenTransform,
                   scaling: str, pinning: str, device: torch.device) -> tuple[TrainDataStats, Tensor, Tensor]:
    """Fit :class:`TrainDataStats` on ``train_x[fit_idx]`` and make the model tokens of both splits.

    Args:
        train_x: the dataset's train part ``(n, N, M)`` (checked by the caller).
        fit_idx, val_idx: the seeded split of ``range(n)`` (:func:`~pyfdc.training.config.split_indices`).
        transform: the token transform for ``(N, M)``.
        scaling: ``"channel"`` or ``"token"`` (a :class:`~pyfdc.core.token_scaler.TokenScaler` is fitted).
        pinning: ``"auto"`` (fit pins; only with ``scaling="channel"``) or ``"off"``.
        device: where the tokens go.

    Returns:
        ``(stats, z_fit, z_val)``: the statistics and the tokens ``(n_fit, T, C)``, ``(n_val, T, C)``
        (float32 on ``device``, ``T, C = transform.num_tokens, transform.token_dim``).
    """
    from pyfdc.data import Standardizer
    from pyfdc.core.exact_structure import ExactStructure
    from pyfdc.core.pinning import PinnedCoordinates
    from pyfdc.core.support import SupportBounds
    from pyfdc.core.token_moments import TokenMoments
    from pyfdc.core.token_scaler import TokenScaler

    standardizer = Standardizer.fit(train_x[fit_idx])
    bounds = SupportBounds.fit(train_x[fit_idx])  # the range samplers keep (pyfdc.core.support)
    exact = ExactStructure.fit(train_x[fit_idx])   # in the data's own dtype: its storage precision counts
    pins = (PinnedCoordinates.fit(standardizer.transform(train_x[fit_idx]), original=train_x[fit_idx])
            if pinning == "auto" and scaling == "channel" else None)
    # fitted on the fit split only, like the standardizer (validation stays unseen)
    token_scaler = (TokenScaler.fit(_raw_tokens(train_x[fit_idx], standardizer, pins, transform), transform.mask())
                    if scaling == "token" else None)
    z_fit, z_val = (_model_tokens(train_x[idx], standardizer, pins, token_scaler, transform, device)
                    for idx in (fit_idx, val_idx))
    token_moments = TokenMoments.fit(z_fit)  # for E2-CRF's gaussian cached output (pyfdc.core.token_moments)
    stats = TrainDataStats(standardizer=standardizer, bounds=bounds, pins=pins, token_scaler=token_scaler,
                           token_moments=token_moments, exact=exact)
    return stats, z_fit, z_val
