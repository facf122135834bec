"""Pinned coordinates: (time step, channel) entries that are constant over the whole training set.

Real series often carry exactly-constant coordinates: the zero pad after a heartbeat, a log-price
path that starts at exactly 0. Their data distribution is a point mass, so on the subspace ``Q`` they
span (in token space ``Q z = T(pin ⊙ T⁻¹ z)``, an orthogonal projector since ``T`` is an isometry)
the forward process is pure noise, ``Q z_t = σ(t) Q ε``, and the exact noise prediction is known:
``E[Q ε | z_t] = Q z_t / σ(t)``. A network has to learn that with a gain of ``1/σ(t)`` — up to 1,000×
at ``t_eps`` — and in practice does not (its ε error at small t stays ~1 there), which is why
generated ECG pads wander and every beat carries high-frequency jitter. :class:`PinProjector`
supplies the exact part, ``ε̂ = (I − Q) net(z, t) + Q z / σ(t)``, for every sampler and for
training (the loss on ``Q`` is then exactly 0, so the network spends nothing there), and
:class:`PinnedCoordinates` holds the values that ``DiffusionModel.tokens_to_data`` restores exactly.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pyfdc.core.time_maps import TimeMaps

__all__ = ["PinnedCoordinates", "PinProjector", "PINNING"]

PINNING: tuple[str, ...] = ("auto", "off")


class PinnedCoordinates:
    """Boolean ``pin (N, M)``, the constant ``values (N, M)`` of pinned entries in the units the
    diffusion sees (standardised), and ``original (N, M)``: the same in the data's own units, kept
    so decoding restores them bit-exactly (a zero pad comes back as 0.0, not 4e-9)."""

    def __init__(self, pin: Any, values: Any, original: Any = None) -> None:
        self.pin = np.asarray(pin, dtype=bool)
        self.values = np.where(self.pin, np.asarray(values, dtype=np.float64), 0.0)
        orig = values if original is None else original
        self.original = np.where(self.pin, np.asarray(orig, dtype=np.float64), 0.0)
        if self.pin.ndim != 2 or self.values.shape != self.pin.shape or self.original.shape != self.pin.shape:
            raise ValueError(f"pin, values and original must all be (N, M), got {self.pin.shape}, "
                             f"{np.shape(values)} and {np.shape(orig)}")
        if not (np.isfinite(self.values).all() and np.isfinite(self.original).all()):
            raise ValueError("pinned values must be finite")
        if self.pin.all():
            raise ValueError("every coordinate is constant: there is nothing to model")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pin.shape[0]), int(self.pin.shape[1]))

    @property
    def count(self) -> int:
        return int(self.pin.sum())

    @classmethod
    def fit(cls, x: np.ndarray, original: np.ndarray | None = None, atol: float = 0.0) -> PinnedCoordinates | None:
        """Coordinates of ``x (n, N, M)`` whose values agree across all ``n >= 2`` series (within
        ``atol``); ``None`` when there are none. ``original``: the same series in the data's own
        units when ``x`` is standardised."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 3 or arr.shape[0] < 2:
            raise ValueError(f"PinnedCoordinates.fit needs x of shape (n >= 2, N, M), got {list(arr.shape)}")
        pin = (arr.max(axis=0) - arr.min(axis=0)) <= atol
        if not pin.any() or pin.all():
            return None
        return cls(pin, arr[0], None if original is None else np.asarray(original, dtype=np.float64)[0])

    def remove(self, x: Tensor) -> Tensor:
        """``(B, N, M)`` -> the same with pinned entries shifted to exactly 0."""
        return x - self._t(self.values, x)

    def _t(self, a: np.ndarray, like: Tensor) -> Tensor:
        if tuple(like.shape[-2:]) != self.shape:
            raise ValueError(f"series must have shape (..., N, M) = (..., {self.shape[0]}, {self.shape[1]}), "
                             f"got {tuple(like.shape)}")
        return torch.as_tensor(a, dtype=like.dtype, device=like.device)

    def to_dict(self) -> dict[str, Any]:
        return {"pin": self.pin.astype(int).tolist(), "values": self.values.tolist(),
                "original": self.original.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PinnedCoordinates:
        if not isinstance(d, dict) or "pin" not in d or "values" not in d:
            raise ValueError(f"pins need keys 'pin' and 'values', got {type(d).__name__}")
        return cls(d["pin"], d["values"], d.get("original"))


class PinProjector(nn.Module):
    """``ε̂ = (I − Q) out + Q z / σ(t)`` on ``(B, T, C)`` tokens; ``Q`` from a transform and a pin mask.

    Buffers are not persistent: the pins live in the checkpoint's config, not among the weights.
    """

    def __init__(self, transform: Any, pins: PinnedCoordinates, sde: Any) -> None:
        super().__init__()
        if pins.shape != (transform.n, transform.m):
            raise ValueError(f"pins are for (N, M) = {pins.shape}, the transform is ({transform.n}, {transform.m})")
        self.transform, self.sde = transform, sde
        self.register_buffer("pin", torch.as_tensor(pins.pin, dtype=torch.float32), persistent=False)
        self.maps = TimeMaps(transform)   # Q as two matmuls inside compiled graphs (an FFT is an opaque call there)

    def project(self, y: Tensor) -> Tensor:
        """``Q y`` for tokens ``y (B, T, C)`` (unchecked transform internals: no host syncs)."""
        pin = self.pin.to(y.dtype)
        if self.maps.to_time is not None and torch.compiler.is_compiling():
            return self.maps.tokens(self.maps.series(y) * pin.T)
        return self.transform._to_tokens(self.transform._from_tokens(y) * pin)

    def forward(self, out: Tensor, z: Tensor, t: Tensor) -> Tensor:
        _, sigma = self.sde.marginal(t.to(z.dtype))
        return out + self.project(z / sigma[:, None, None] - out)  # Q is linear: one projection
