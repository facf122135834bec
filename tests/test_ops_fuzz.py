"""Hypothesis fuzz of each compiled op against its twin (200 examples per op and device)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pyfdc.ops as ops
from opsutil import DEVICES, DTYPES, index_rows, maybe_spread, require_compiled, select_inputs

FUZZ = settings(max_examples=200, deadline=None, derandomize=False)

sizes = st.fixed_dictionaries({
    "B": st.integers(1, 8), "T": st.integers(1, 40), "seed": st.integers(0, 2**31 - 1),
    "noncontig": st.booleans(), "dtype_i": st.integers(0, 2),
})


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(sz=sizes, C=st.integers(1, 6), K=st.integers(0, 45),
       tau0=st.sampled_from([0.0, 1e-3, 0.1, 0.5, 2.0, 50.0, float("inf")]),
       eps=st.sampled_from([0.0, 1e-6, 1e-3, 1.0]), ew=st.booleans(),
       probe_p=st.sampled_from([0.0, 0.1, 0.5]), force_p=st.sampled_from([0.0, 0.3, 1.0]),
       drift=st.sampled_from([0.0, 0.05, 0.5, 3.0]))
def test_select_tokens_fuzz(device, sz, C, K, tau0, eps, ew, probe_p, force_p, drift):
    require_compiled(device)
    dtypes = DTYPES[device]
    dtype = dtypes[sz["dtype_i"] % len(dtypes)]
    B, T = sz["B"], sz["T"]
    z, z_ref, probe, force = select_inputs(B, T, C, dtype, device, tau0=tau0, eps=eps, energy_weighted=ew,
                                           probe_p=probe_p, force_p=force_p, seed=sz["seed"], drift=drift)
    nc = sz["noncontig"]
    idx, count = ops.select_tokens(*(maybe_spread(t, nc) for t in (z, z_ref, probe, force)), K, tau0, eps, ew)
    ref_idx, ref_count = ops.reference.select_tokens(z, z_ref, probe, force, K, tau0, eps, ew)
    assert torch.equal(idx, ref_idx) and torch.equal(count, ref_count)


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(sz=sizes, L=st.integers(1, 3), H=st.integers(1, 4), dh=st.integers(1, 8), S=st.integers(0, 45),
       regime=st.sampled_from(["mixed", "none", "all"]))
def test_kv_scatter_fuzz(device, sz, L, H, dh, S, regime):
    require_compiled(device)
    dtypes = DTYPES[device]
    dtype = dtypes[sz["dtype_i"] % len(dtypes)]
    B, T = sz["B"], sz["T"]
    g = torch.Generator().manual_seed(sz["seed"])
    k_cache, v_cache = (torch.randn(L, B, H, T, dh, generator=g).to(device, dtype) for _ in range(2))
    k_new, v_new = (torch.randn(B, H, S, dh, generator=g).to(device, dtype) for _ in range(2))
    idx = index_rows(B, S, T, regime, g).to(device)
    layer = int(torch.randint(0, L, (1,), generator=g))
    nc = sz["noncontig"]
    kc, vc = maybe_spread(k_cache, nc), maybe_spread(v_cache, nc)
    ops.kv_scatter(kc, vc, layer, *(maybe_spread(t, nc) for t in (idx, k_new, v_new)))
    ops.reference.kv_scatter(k_cache, v_cache, layer, idx, k_new, v_new)
    assert torch.equal(kc, k_cache) and torch.equal(vc, v_cache)


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(sz=sizes, D=st.integers(1, 80), S=st.integers(0, 45), regime=st.sampled_from(["mixed", "none", "all"]),
       alpha_max=st.sampled_from([0.0, 0.1, 1.0]))
def test_error_feedback_fuzz(device, sz, D, S, regime, alpha_max):
    require_compiled(device)
    dtypes = DTYPES[device]
    dtype = dtypes[sz["dtype_i"] % len(dtypes)]
    B, T = sz["B"], sz["T"]
    g = torch.Generator().manual_seed(sz["seed"])
    crf = torch.randn(B, T, D, generator=g).to(device, dtype)
    fresh = torch.randn(B, S, D, generator=g).to(device, dtype)
    alpha = (alpha_max * torch.rand(B, generator=g)).to(device, dtype)
    idx = index_rows(B, S, T, regime, g).to(device)
    nc = sz["noncontig"]
    c = maybe_spread(crf, nc)
    err = ops.error_feedback(c, *(maybe_spread(t, nc) for t in (fresh, idx, alpha)))
    ref_err = ops.reference.error_feedback(crf, fresh, idx, alpha)
    if device == "cpu":
        assert torch.equal(c, crf)
    else:
        torch.testing.assert_close(c, crf)
    torch.testing.assert_close(err, ref_err)
