"""pyfdc's E2-CRF ops: the only module that touches ``torch.ops.pyfdc``.

Each op runs the compiled kernel for its tensors' device when there is one (``backend(device)``
says which) and its pure-PyTorch twin in :mod:`pyfdc.ops.reference` otherwise. Signatures and
docstrings are the twins'. Everything else in pyfdc calls these functions.

* :func:`kv_scatter` — fused K/V row scatter into the persistent per-layer cache.
* :func:`select_tokens` — energy-weighted recompute-set selection (Eq. 13), compacted per sample.
* :func:`select_budget` — static-shape recompute set: exactly k tokens per sample (band, probes, top drift).
* :func:`error_feedback` — error-feedback correction (Eq. 14) plus per-sample error norms.
"""
from __future__ import annotations

import torch

from . import _backend, reference
from ._backend import backend

__all__ = ["backend", "kv_scatter", "select_tokens", "select_budget", "error_feedback", "reference"]

if _backend.LOADED:
    from . import _fake  # noqa: F401  (registers the fake kernels)

    _kv_scatter = torch.ops.pyfdc.kv_scatter.default
    _select_tokens = torch.ops.pyfdc.select_tokens.default
    _error_feedback = torch.ops.pyfdc.error_feedback.default
    _select_budget = torch.ops.pyfdc.select_budget.default

_use_compiled = _backend.use_compiled


def kv_scatter(k_cache: torch.Tensor, v_cache: torch.Tensor, layer: int, idx: torch.Tensor,
               k_new: torch.Tensor, v_new: torch.Tensor) -> None:
    if not _use_compiled(k_cache.device.type):
        return reference.kv_scatter(k_cache, v_cache, layer, idx, k_new, v_new)
    _kv_scatter(k_cache, v_cache, layer, idx, k_new, v_new)


def select_tokens(z: torch.Tensor, z_ref: torch.Tensor, probe_mask: torch.Tensor, force: torch.Tensor,
                  K: int, tau0: float, eps: float, energy_weighted: bool = True, *,
                  idx_out: torch.Tensor | None = None,
                  count_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if not _use_compiled(z.device.type):
        return reference.select_tokens(z, z_ref, probe_mask, force, K, tau0, eps, energy_weighted,
                                       idx_out=idx_out, count_out=count_out)
    if idx_out is None:
        idx_out = torch.empty(tuple(z.shape[:2]) if z.dim() == 3 else (0, 0), dtype=torch.int64, device=z.device)
    if count_out is None:
        count_out = torch.empty(tuple(z.shape[:1]) if z.dim() == 3 else (0,), dtype=torch.int64, device=z.device)
    _select_tokens(z, z_ref, probe_mask, force, K, float(tau0), float(eps), energy_weighted, idx_out, count_out)
    return idx_out, count_out


def select_budget(z: torch.Tensor, z_ref: torch.Tensor, probes: torch.Tensor, K: int, tau0: float, eps: float,
                  energy_weighted: bool = True, *, idx_out: torch.Tensor, overflow_out: torch.Tensor) -> torch.Tensor:
    if not _use_compiled(z.device.type):
        return reference.select_budget(z, z_ref, probes, K, tau0, eps, energy_weighted,
                                       idx_out=idx_out, overflow_out=overflow_out)
    _select_budget(z, z_ref, probes, K, float(tau0), float(eps), energy_weighted, idx_out, overflow_out)
    return idx_out


def error_feedback(crf: torch.Tensor, fresh: torch.Tensor, idx: torch.Tensor, alpha: torch.Tensor, *,
                   err_out: torch.Tensor | None = None) -> torch.Tensor:
    if not _use_compiled(crf.device.type):
        return reference.error_feedback(crf, fresh, idx, alpha, err_out=err_out)
    if err_out is None:
        err_out = torch.empty(tuple(crf.shape[:1]) if crf.dim() == 3 else (0,), dtype=crf.dtype, device=crf.device)
    _error_feedback(crf, fresh, idx, alpha, err_out)
    return err_out


for _name in ("kv_scatter", "select_tokens", "select_budget", "error_feedback"):
    globals()[_name].__doc__ = getattr(reference, _name).__doc__
del _name
