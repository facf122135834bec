"""``DiffusionModel``: score network + token transform + SDE + standardizer, the object samplers take."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from pyfdc.core.score_net import ScoreTransformer
from pyfdc.core.exact_structure import ExactStructure
from pyfdc.core.sde import VPSDE
from pyfdc.core.spectral import TokenTransform
from pyfdc.core.pinning import PinnedCoordinates, PinProjector
from pyfdc.core.support import SupportBounds, SupportClip
from pyfdc.core.token_moments import TokenMoments
from pyfdc.core.token_scaler import TokenScaler

__all__ = ["DiffusionModel", "ScalerLike"]


@runtime_checkable
class ScalerLike(Protocol):
    """What the model needs from :class:`pyfdc.data.Standardizer`: per-channel maps on ``(..., N, M)``."""

    def transform(self, x: Any) -> Any: ...

    def inverse(self, x: Any) -> Any: ...


@dataclass
class DiffusionModel:
    """A trained (or fresh) diffusion model in token space.

    On construction the network's output mask is set to ``transform.mask()`` so pinned coordinates
    (Im of DC / Nyquist) are exactly zero in every prediction, however the network was built.

    ``token_moments``: per-coordinate mean/variance of the training tokens (:mod:`pyfdc.core.token_moments`),
    used by the ``gaussian`` cached output of E2-CRF; ``None`` in checkpoints written before them.

    ``bounds``: the training data's per-channel range (:mod:`pyfdc.core.support`); with ``clip`` (the
    default) samplers clip the denoised estimate to it at every step and :meth:`decode_samples`
    clamps the decoded series to it. No bounds (checkpoints written before them): no clipping.

    ``exact``: the training data's exact band limit, per-series normalisation and value grid
    (:mod:`pyfdc.core.exact_structure`), or ``None``; imposed on decoded samples when ``clip`` is on.
    """

    net: ScoreTransformer
    transform: TokenTransform
    sde: VPSDE = field(default_factory=VPSDE)
    scaler: ScalerLike | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    token_scaler: TokenScaler | None = None
    pins: PinnedCoordinates | None = None
    bounds: SupportBounds | None = None
    clip: bool = True
    token_moments: TokenMoments | None = None
    exact: ExactStructure | None = None
    # sampling choices made for these weights: E2-CRF calibrations by (solver, steps, clip_tag)
    # (pyfdc.e2crf.calibrate.model_calibration), --sampler auto's by ("auto", shadow series, clip_tag)
    calibrations: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.transform, TokenTransform):
            raise TypeError(f"transform must be a TokenTransform, got {type(self.transform).__name__}")
        if not isinstance(self.sde, VPSDE):
            raise TypeError(f"sde must be a VPSDE, got {type(self.sde).__name__}")
        if self.scaler is not None and not isinstance(self.scaler, ScalerLike):
            raise TypeError(f"scaler must have transform()/inverse() or be None, got {type(self.scaler).__name__}")
        if self.token_scaler is not None:
            if not isinstance(self.token_scaler, TokenScaler):
                raise TypeError(f"token_scaler must be a TokenScaler or None, got {type(self.token_scaler).__name__}")
            want = (self.transform.num_tokens, self.transform.token_dim)
            if self.token_scaler.shape != want:
                raise ValueError(f"token_scaler is fitted for (T, C) = {self.token_scaler.shape} but the "
                                 f"{self.transform.kind!r} transform gives {want}")
        cfg = getattr(self.net, "config", None)
        if cfg is None or not hasattr(self.net, "mask"):
            raise TypeError(f"net must be a ScoreTransformer, got {type(self.net).__name__}")
        shape = (self.transform.num_tokens, self.transform.token_dim)
        if (cfg.num_tokens, cfg.token_dim) != shape:
            raise ValueError(
                f"net expects (T, C) = ({cfg.num_tokens}, {cfg.token_dim}) tokens but the "
                f"{self.transform.kind!r} transform gives {shape}"
            )
        head = getattr(self.net, "time_head", None)
        if head is not None:
            if cfg.series_channels != self.transform.m:
                raise ValueError(f"the net's time head is for M = {cfg.series_channels} channels, the transform "
                                 f"has {self.transform.m}")
            head.attach(self.transform)
        with torch.no_grad():
            self.net.mask.copy_(self.transform.mask(device=self.net.mask.device, dtype=self.net.mask.dtype))
        if self.pins is not None:
            if not isinstance(self.pins, PinnedCoordinates):
                raise TypeError(f"pins must be PinnedCoordinates or None, got {type(self.pins).__name__}")
            if self.token_scaler is not None:
                raise ValueError("pinned coordinates need per-channel scaling (token_scaler=None): the exact "
                                 "noise prediction on them assumes noise white in the transform's tokens")
            self.net.pin_projector = PinProjector(self.transform, self.pins, self.sde).to(
                self.net.mask.device, self.net.mask.dtype)
        else:
            self.net.pin_projector = None
        self._check_per_channel("bounds", SupportBounds)
        if self.token_moments is not None:
            if not isinstance(self.token_moments, TokenMoments):
                raise TypeError(f"token_moments must be TokenMoments or None, got {type(self.token_moments).__name__}")
            want = (self.transform.num_tokens, self.transform.token_dim)
            if self.token_moments.shape != want:
                raise ValueError(f"token_moments are for (T, C) = {self.token_moments.shape} but the "
                                 f"{self.transform.kind!r} transform gives {want}")
        self._check_per_channel("exact", ExactStructure)
        if self.clip not in (True, False):
            raise ValueError(f"clip must be a bool, got {self.clip!r}")

    def _check_per_channel(self, name: str, cls: type) -> None:
        """``self.<name>`` is ``None`` or a ``cls`` for the transform's ``M`` channels (else a one-line error)."""
        value = getattr(self, name)
        if value is None:
            return
        if not isinstance(value, cls):
            raise TypeError(f"{name} must be a {cls.__name__} or None, got {type(value).__name__}")
        if value.channels != self.transform.m:
            raise ValueError(f"{name} is for M = {value.channels} channels, the transform has {self.transform.m}")

    def support_clip(self) -> SupportClip | None:
        """The per-step clip of the denoised estimate samplers apply, or ``None`` (no bounds, or ``clip`` off)."""
        if self.bounds is None or not self.clip:
            return None
        return SupportClip(self, self.bounds, dtype=self.net.mask.dtype).to(self.device)

    def sampling_eps_fn(self, eps_fn: Any, compile: bool = False) -> Any:
        """``eps_fn(z, t, i)`` as samplers should call it: clipped to the support when that is on (the clip
        compiled with ``compile``)."""
        clip = self.support_clip()
        return eps_fn if clip is None else clip.wrap(eps_fn, compile=compile)

    @property
    def standardizer(self) -> ScalerLike | None:
        """Alias of :attr:`scaler`."""
        return self.scaler

    @property
    def num_tokens(self) -> int:
        return self.transform.num_tokens

    @property
    def token_dim(self) -> int:
        return self.transform.token_dim

    @property
    def device(self) -> torch.device:
        return self.net.mask.device

    def mask(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """``(T, C)`` free-coordinate mask on the network's device."""
        return self.transform.mask(device=self.device, dtype=dtype)

    def eps(self, z: Tensor, t: Tensor) -> Tensor:
        """Predicted noise ``(B, T, C)`` for tokens ``z (B, T, C)`` at times ``t (B,)``."""
        return self.net(z, t)

    def score(self, z: Tensor, t: Tensor) -> Tensor:
        """Score ``-eps_hat / sigma(t)``, ``(B, T, C)``."""
        return -self.net(z, t) / self.sde.marginal(t)[1][:, None, None]

    @property
    def scaling(self) -> str:
        """``"token"`` when tokens are standardised per coordinate, else ``"channel"``."""
        return "channel" if self.token_scaler is None else "token"

    def tokens_to_data(self, z: Tensor) -> Tensor:
        """Model tokens ``(B, T, C)`` -> series ``(B, N, M)`` in original units (both scalings inverted);
        float64 when the scaler says float32 cannot hold the data (``Standardizer.needs_float64``)."""
        if self.token_scaler is not None:
            z = self.token_scaler.inverse(z) * self.transform.mask(device=z.device, dtype=z.dtype)
        x = self.transform.from_tokens(z)
        if self.scaler is not None and getattr(self.scaler, "needs_float64", False):
            x = x.double()  # a large offset over a small spread: float32 would round the signal away
        x = self.scaler.inverse(x) if self.scaler is not None else x
        return self._restore_pins(x)

    def _restore_pins(self, x: Tensor) -> Tensor:
        """Pinned entries of series ``x (B, N, M)`` set to their values in original units (a pad of 0.0 comes
        back as exactly 0.0)."""
        if self.pins is None:
            return x
        pin = torch.as_tensor(self.pins.pin, dtype=x.dtype, device=x.device)
        return x * (1 - pin) + torch.as_tensor(self.pins.original, dtype=x.dtype, device=x.device) * pin

    def decode_samples(self, z: Tensor) -> Tensor:
        """Sampled tokens ``(B, T, C)`` -> series ``(B, N, M)``: :meth:`tokens_to_data`; with ``clip`` on, the
        data's exact structure imposed (band limit, series norm, value grid; pins restored after) and the
        series clamped to the support bounds (what every sampler returns). The clamp comes last: a sample that
        leaves the data's range keeps the range, at the cost of its normalisation there."""
        x = self.tokens_to_data(z)
        if not self.clip:
            return x
        if self.exact is not None:
            x = self._restore_pins(self.exact.apply(x))
        return x if self.bounds is None else self.bounds.clamp(x)

    def data_to_tokens(self, x: Tensor) -> Tensor:
        """Series ``(B, N, M)`` in original units -> model tokens ``(B, T, C)`` (what the SDE runs on)."""
        if self.scaler is not None:
            x = self.scaler.transform(x)
        if self.pins is not None:
            x = self.pins.remove(x)
        z = self.transform.to_tokens(x)
        if self.token_scaler is not None:
            z = self.token_scaler.transform(z) * self.transform.mask(device=z.device, dtype=z.dtype)
        return z


def clip_tag(model: Any) -> str:
    """``"-noclip"`` when the model has support bounds but samples with the clip off, else ``""``."""
    return "-noclip" if getattr(model, "bounds", None) is not None and not getattr(model, "clip", True) else ""


def sampling_fingerprint(model: Any) -> str:
    """What a sampling choice (an E2-CRF calibration, ``--sampler auto``'s pick) is made for: the weights'
    fingerprint, tagged (:func:`clip_tag`) when the support clip is off — the clip changes every step's
    estimate and the decoded series, so a choice made with it does not carry over to sampling without it."""
    return weights_fingerprint(model) + clip_tag(model)


def weights_fingerprint(model: Any) -> str:
    """16-hex SHA-256 prefix over the network's parameters and buffers (names, shapes, bytes): which model a
    calibration or a sample set was made with."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.net.state_dict().items()):
        h.update(k.encode() + str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
