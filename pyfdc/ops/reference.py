"""Pure-PyTorch twins of pyfdc's compiled ops (``torch.ops.pyfdc.*``).

Same names, signatures, docstrings and semantics as the public ``pyfdc.ops`` functions; they are
what runs when the extension is absent or ``PYFDC_FORCE_REFERENCE=1``, and the specification the
compiled kernels are tested against. Arithmetic runs in ``acc`` = float32 for float16/bfloat16/
float32 inputs and float64 for float64 inputs, like the kernels (``at::opmath_type``).

Paper references: E2-CRF, Sec. 3.3, Eq. (13)-(14), Algorithm 1, App. A.6.
"""
from __future__ import annotations

import torch

from . import _checks


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def kv_scatter(k_cache: torch.Tensor, v_cache: torch.Tensor, layer: int, idx: torch.Tensor,
               k_new: torch.Tensor, v_new: torch.Tensor) -> None:
    """Write freshly computed K/V rows into one layer of the persistent cache, in place.

    For every sample ``b`` and slot ``s`` with ``j = idx[b, s] >= 0``::

        k_cache[layer, b, :, j, :] = k_new[b, :, s, :]     (same for v)

    Args:
        k_cache, v_cache: ``(L, B, H, N', dh)`` floating, mutated.
        layer: ``0 <= layer < L``.
        idx: ``(B, k)`` int64 token indices; ``-1`` pads rows of samples that recompute fewer
            than ``k`` tokens (padded slots are skipped). Valid entries of a row should be
            distinct (``select_tokens`` rows are); with duplicates the last slot wins on CPU.
        k_new, v_new: ``(B, H, k, dh)``, the cache's dtype.

    Raises:
        ValueError: wrong rank/shape/dtype/device, ``layer`` outside ``[0, L)``, or (CPU) an index
            entry outside ``[-1, N')``. On CUDA out-of-range entries are skipped instead.
    """
    L, B, H, T, dh, S = _checks.check_kv_scatter(k_cache, v_cache, layer, idx, k_new, v_new)
    _checks.check_index_range("kv_scatter", idx, T)
    if B * H * T * dh * S == 0:
        return
    valid = (idx >= 0) & (idx < T)
    # src[b, j] = the (last) slot s writing token j, -1 if none; column T collects padding.
    src = torch.full((B, T + 1), -1, dtype=torch.int64, device=idx.device)
    slots = torch.arange(S, device=idx.device).expand(B, S)
    src.scatter_reduce_(1, torch.where(valid, idx, T), torch.where(valid, slots, -1), reduce="amax")
    src = src[:, :T]
    hit = (src >= 0)[:, None, :, None]
    gather_idx = src.clamp(min=0)[:, None, :, None].expand(B, H, T, dh)
    for cache, new in ((k_cache, k_new), (v_cache, v_new)):
        dst = cache[layer]
        dst.copy_(torch.where(hit, new.gather(2, gather_idx), dst))


def select_tokens(z: torch.Tensor, z_ref: torch.Tensor, probe_mask: torch.Tensor, force: torch.Tensor,
                  K: int, tau0: float, eps: float, energy_weighted: bool = True, *,
                  idx_out: torch.Tensor | None = None,
                  count_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample recompute set of E2-CRF (Eq. (13), thresholds of App. A.6.2), compacted.

    Token ``κ`` of sample ``b`` is selected when any of these holds::

        κ <= K  |  δ_κ > τ_κ  |  probe_mask[b, κ]  |  force[b]
        δ_κ = ‖z_κ − z_ref,κ‖₂,   τ_κ = tau0 / (eps + E_κ),   E_κ = ‖z_κ‖²

    (``τ_κ = tau0`` when ``energy_weighted`` is false; ``tau0 = inf`` disables the drift rule).

    Args:
        z: ``(B, N', 2M)`` current half-spectrum tokens, floating.
        z_ref: ``(B, N', 2M)`` each token's input at its last recompute, ``z``'s dtype.
        probe_mask: ``(B, N')`` bool, random probe tokens.
        force: ``(B,)`` bool, select every token of the sample (step 0, every R steps, r > τ_warn).
        K: ``>= 0``, tokens ``0..K`` are always selected.
        tau0: ``>= 0``, not NaN.  eps: finite, ``>= 0``.
        idx_out: optional ``(B, N')`` int64 buffer to write into (no allocation).
        count_out: optional ``(B,)`` int64 buffer.

    Returns:
        ``(idx, count)``: ``idx (B, N')`` int64 holds sample ``b``'s selected tokens in ascending
        order in ``idx[b, :count[b]]`` and ``-1`` after; ``count (B,)`` int64. When buffers are
        given they are returned.
    """
    if idx_out is None:
        idx_out = torch.empty(tuple(z.shape[:2]) if z.dim() == 3 else (0, 0), dtype=torch.int64, device=z.device)
    if count_out is None:
        count_out = torch.empty(tuple(z.shape[:1]) if z.dim() == 3 else (0,), dtype=torch.int64, device=z.device)
    B, T, C = _checks.check_select_tokens(z, z_ref, probe_mask, force, K, tau0, eps, idx_out, count_out)
    acc = _acc(z.dtype)
    zf = z.to(acc)
    diff = zf - z_ref.to(acc)
    drift = diff.mul(diff).sum(-1).sqrt()
    if energy_weighted:
        energy = zf.mul(zf).sum(-1)
        tau = torch.full_like(energy, tau0).div_(energy.add_(eps))
        sel = drift > tau
    else:
        sel = drift > tau0
    positions = torch.arange(T, device=z.device)
    sel |= (positions <= K) | probe_mask | force[:, None]
    count = sel.sum(1)
    order = torch.argsort((~sel).to(torch.int8), dim=1, stable=True)
    idx_out.copy_(torch.where(positions < count[:, None], order, -1))
    count_out.copy_(count)
    return idx_out, count_out


def select_budget(z: torch.Tensor, z_ref: torch.Tensor, probes: torch.Tensor, K: int, tau0: float, eps: float,
                  energy_weighted: bool = True, *, idx_out: torch.Tensor, overflow_out: torch.Tensor) -> torch.Tensor:
    """Static-shape recompute set: exactly ``k`` tokens per sample (the budget mode of E2-CRF).

    Row ``b`` of ``idx_out (B, k)`` is written as::

        [0, 1, ..., K | probes[b, 0..P) | the k - K - 1 - P other tokens with the highest δ_κ / τ_κ]

    in that order, the drift part by descending score (ties: lower token first). ``δ_κ`` and
    ``τ_κ`` are those of :func:`select_tokens`; the score ``δ_κ (eps + E_κ)`` (or ``δ_κ`` without
    energy weighting) orders tokens like ``δ_κ / τ_κ`` for every ``tau0 > 0`` and stays defined at
    ``tau0 = 0``; a NaN drift ranks first. ``overflow_out[b] +=`` the number of tokens outside the
    band and the probes with ``δ_κ > τ_κ`` that did not fit (accumulated on the device, so a run
    can count how often the budget was too small without a host sync).

    Args:
        z, z_ref: ``(B, N', 2M)``, floating, same dtype.
        probes: ``(B, P)`` int64, distinct tokens with ``K < j < N'`` per row (``P`` may be 0).
        K: ``>= 0``.  tau0: ``>= 0``, not NaN (only the overflow count uses it).  eps: finite, ``>= 0``.
        idx_out: ``(B, k)`` int64 with ``K + 1 + P <= k <= N'``, written.
        overflow_out: ``(B,)`` int64, incremented.

    Returns:
        ``idx_out``.

    Raises:
        ValueError: wrong shapes/dtypes/devices, a budget that cannot hold band and probes, or
            (CPU) a probe inside the band, outside ``[0, N')`` or repeated.
    """
    B, T, C, P, k = _checks.check_select_budget(z, z_ref, probes, K, tau0, eps, idx_out, overflow_out)
    _checks.check_probe_rows("select_budget", probes, K, T)
    if B == 0:
        return idx_out
    acc = _acc(z.dtype)
    zf = z.to(acc)
    diff = zf - z_ref.to(acc)
    drift_sq = diff.mul(diff).sum(-1)
    drift = drift_sq.sqrt()
    energy = zf.mul(zf).sum(-1)
    if energy_weighted:
        score = drift * (energy + eps)
        tau = torch.full_like(energy, tau0).div_(energy + eps)
    else:
        score = drift.clone()
        tau = torch.full_like(energy, tau0)
    score = torch.nan_to_num(score, nan=float("inf"))
    positions = torch.arange(T, device=z.device)
    taken = (positions <= K).expand(B, T).clone()
    taken.scatter_(1, probes, True)
    drifting = ((drift > tau) & ~taken).sum(1)
    fill = k - K - 1 - P
    order = torch.sort(score.masked_fill(taken, -float("inf")), dim=1, descending=True, stable=True).indices
    idx_out[:, : K + 1].copy_(positions[: K + 1].expand(B, K + 1))
    idx_out[:, K + 1: K + 1 + P].copy_(probes)
    idx_out[:, K + 1 + P:].copy_(order[:, :fill])
    overflow_out.add_((drifting - fill).clamp(min=0))
    return idx_out


def error_feedback(crf: torch.Tensor, fresh: torch.Tensor, idx: torch.Tensor, alpha: torch.Tensor, *,
                   err_out: torch.Tensor | None = None) -> torch.Tensor:
    """Error-feedback correction of cached rows (Eq. (14)), in place, with per-sample error norms.

    For every sample ``b`` and slot ``s`` with ``j = idx[b, s] >= 0``::

        crf[b, j] ← crf[b, j] + alpha[b] · (fresh[b, s] − crf[b, j])
        err[b]    = sqrt( Σ_s ‖fresh[b, s] − crf_old[b, j]‖² )     (valid slots only)

    The correction ``alpha·(fresh − crf)`` is computed in ``acc`` and rounded to ``crf``'s dtype
    before it is added (identical to single rounding for float32/float64).

    Args:
        crf: ``(B, N', d)`` cached features (cumulative residuals), floating, mutated.
        fresh: ``(B, k, d)`` freshly computed features of the tokens in ``idx``, ``crf``'s dtype.
        idx: ``(B, k)`` int64 token indices, ``-1`` = padding (skipped). Valid entries of a row
            must be distinct.
        alpha: ``(B,)`` step sizes, ``crf``'s dtype (the paper uses ``0 <= alpha <= 1``).
        err_out: optional ``(B,)`` buffer of ``crf``'s dtype to write into.

    Returns:
        ``err (B,)``, ``crf``'s dtype: the input to the event intensity (Eq. (12)).
    """
    if err_out is None:
        err_out = torch.empty(tuple(crf.shape[:1]) if crf.dim() == 3 else (0,), dtype=crf.dtype, device=crf.device)
    B, T, D, S = _checks.check_error_feedback(crf, fresh, idx, alpha, err_out)
    _checks.check_index_range("error_feedback", idx, T)
    acc = _acc(crf.dtype)
    valid = ((idx >= 0) & (idx < T))[:, :, None]
    gather_idx = torch.where(valid, idx[:, :, None], 0).expand(B, S, D)
    old = crf.gather(1, gather_idx)
    diff = torch.where(valid, fresh.to(acc) - old.to(acc), 0)
    err_out.copy_(diff.mul(diff).sum((1, 2)).sqrt())
    correction = torch.where(valid, alpha.to(acc)[:, None, None] * diff, 0).to(crf.dtype)
    crf.scatter_add_(1, gather_idx, correction)  # padded slots add exact zeros to row 0
    return err_out
