"""Compiled ops vs their pure-PyTorch twins over device × dtype × a table of shapes and regimes.

Exact (``torch.equal``) where the math is exact: selected indices and counts, scattered K/V rows,
and corrected rows on the CPU (same per-element operations in the same order, no contraction).
Error norms are sums in different orders: ``assert_close`` at its default tolerances.
"""
from __future__ import annotations

import pytest
import torch

import pyfdc.ops as ops
from opsutil import (DEVICE_DTYPES, index_rows, maybe_spread, naive_select, require_compiled,
                     select_inputs)

# (B, N', C): B in {1, 3, 8}; N' odd and even, including 1 and the paper's ECG 94.
SELECT_SHAPES = [(1, 1, 2), (3, 2, 2), (3, 5, 4), (8, 94, 2), (8, 7, 6)]
# name: (K, tau0, eps, energy_weighted, probe_p, force_p)
SELECT_REGIMES = {
    "mixed": (1, 0.5, 1e-3, True, 0.1, 0.25),
    "prefix_only": (0, float("inf"), 1e-3, True, 0.0, 0.0),   # nothing beyond the always-set {0..K}
    "everything": (0, 0.5, 1e-3, True, 0.0, 1.0),              # force on every sample
    "K_ge_N": (200, 0.5, 1e-3, True, 0.0, 0.0),
    "tau0_zero": (0, 0.0, 0.0, True, 0.0, 0.0),                # every drifting token
    "unweighted": (1, 0.7, 1e-3, False, 0.05, 0.0),
}


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("shape", SELECT_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("regime", SELECT_REGIMES)
@pytest.mark.parametrize("noncontig", [False, True], ids=["contig", "strided"])
def test_select_tokens_parity(device, dtype, shape, regime, noncontig):
    require_compiled(device)
    B, T, C = shape
    K, tau0, eps, ew, probe_p, force_p = SELECT_REGIMES[regime]
    z, z_ref, probe, force = select_inputs(B, T, C, dtype, device, tau0=tau0, eps=eps, energy_weighted=ew,
                                           probe_p=probe_p, force_p=force_p, seed=B * 1000 + T)
    args = [maybe_spread(t, noncontig) for t in (z, z_ref, probe, force)]
    idx_out = maybe_spread(torch.full((B, T), 7, dtype=torch.int64, device=device), noncontig)
    count_out = maybe_spread(torch.full((B,), 7, dtype=torch.int64, device=device), noncontig)
    idx, count = ops.select_tokens(*args, K, tau0, eps, ew, idx_out=idx_out, count_out=count_out)
    assert idx is idx_out and count is count_out
    ref_idx, ref_count = ops.reference.select_tokens(z, z_ref, probe, force, K, tau0, eps, ew)
    assert torch.equal(idx, ref_idx)
    assert torch.equal(count, ref_count)
    expected = naive_select(z.cpu(), z_ref.cpu(), probe.cpu(), force.cpu(), K, tau0, eps, ew)
    for b, row in enumerate(expected):
        assert idx[b, : len(row)].tolist() == row and int(count[b]) == len(row)
        assert (idx[b, len(row):] == -1).all()
    if regime in ("everything", "K_ge_N"):
        assert (count == T).all()
    if regime == "prefix_only":
        assert (count == 1).all()


# (L, B, H, N', dh, k); the last has k > N' (rows longer than the token count, padded).
KV_SHAPES = [(1, 1, 1, 1, 1, 1), (3, 3, 2, 5, 4, 3), (2, 8, 12, 94, 6, 40), (2, 3, 2, 7, 3, 9)]


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("shape", KV_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("regime", ["mixed", "none", "all"])
@pytest.mark.parametrize("noncontig", [False, True], ids=["contig", "strided"])
def test_kv_scatter_parity(device, dtype, shape, regime, noncontig):
    require_compiled(device)
    L, B, H, T, dh, S = shape
    g = torch.Generator().manual_seed(L * 100 + T)
    k_cache = torch.randn(L, B, H, T, dh, generator=g).to(dtype=dtype, device=device)
    v_cache = torch.randn(L, B, H, T, dh, generator=g).to(dtype=dtype, device=device)
    k_new = torch.randn(B, H, S, dh, generator=g).to(dtype=dtype, device=device)
    v_new = torch.randn(B, H, S, dh, generator=g).to(dtype=dtype, device=device)
    idx = index_rows(B, S, T, regime, g).to(device)
    layer = L - 1
    kc, vc = maybe_spread(k_cache, noncontig), maybe_spread(v_cache, noncontig)
    ops.kv_scatter(kc, vc, layer, *(maybe_spread(t, noncontig) for t in (idx, k_new, v_new)))
    rk, rv = k_cache.clone(), v_cache.clone()
    ops.reference.kv_scatter(rk, rv, layer, idx, k_new, v_new)
    assert torch.equal(kc, rk) and torch.equal(vc, rv)
    # Spelled out: only the scattered rows of `layer` changed, to exactly the new rows.
    for b in range(B):
        for s in range(S):
            j = int(idx[b, s])
            if j >= 0:
                assert torch.equal(kc[layer, b, :, j], k_new[b, :, s])
                assert torch.equal(vc[layer, b, :, j], v_new[b, :, s])
    hit = torch.zeros(B, T, dtype=torch.bool)
    for b in range(B):
        hit[b, idx[b][idx[b] >= 0].cpu()] = True
    assert torch.equal(kc[:layer], k_cache[:layer])  # other layers untouched
    untouched = ~hit.to(device)[:, None, :, None].expand(B, H, T, dh)
    assert torch.equal(kc[layer][untouched], k_cache[layer][untouched])


# (B, N', d, k)
EF_SHAPES = [(1, 1, 1, 1), (3, 5, 4, 2), (8, 94, 72, 8), (3, 7, 3, 9), (8, 6, 16, 6)]


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("shape", EF_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("regime", ["mixed", "none", "all"])
@pytest.mark.parametrize("noncontig", [False, True], ids=["contig", "strided"])
def test_error_feedback_parity(device, dtype, shape, regime, noncontig):
    require_compiled(device)
    B, T, D, S = shape
    g = torch.Generator().manual_seed(B * 100 + T)
    crf = torch.randn(B, T, D, generator=g).to(dtype=dtype, device=device)
    fresh = torch.randn(B, S, D, generator=g).to(dtype=dtype, device=device)
    alpha = torch.rand(B, generator=g).to(dtype=dtype, device=device)
    idx = index_rows(B, S, T, regime, g).to(device)
    c = maybe_spread(crf, noncontig)
    err_out = maybe_spread(torch.full((B,), 7.0, dtype=dtype, device=device), noncontig)
    err = ops.error_feedback(c, *(maybe_spread(t, noncontig) for t in (fresh, idx, alpha)), err_out=err_out)
    assert err is err_out
    rc = crf.clone()
    ref_err = ops.reference.error_feedback(rc, fresh, idx, alpha)
    if device == "cpu":
        assert torch.equal(c, rc)
    else:  # same operations and rounding steps; kept loose until checked on a GPU
        torch.testing.assert_close(c, rc)
    torch.testing.assert_close(err, ref_err)
    if regime == "none":
        assert torch.equal(c, crf) and (err == 0).all()
    # float64 spelled out for one sample.
    b = B - 1
    rows = [(s, int(idx[b, s])) for s in range(S) if int(idx[b, s]) >= 0]
    want = sum(float((fresh[b, s].double() - crf[b, j].double()).square().sum()) for s, j in rows) ** 0.5
    rtol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 2e-2)
    assert abs(float(err[b]) - want) <= rtol * want + 1e-6
