"""``select_budget`` (the static-shape recompute set): compiled kernel vs twin vs a float64 loop,
the overflow counter, bad input, opcheck, fuzz and a torch.compile trace."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pyfdc.ops as ops
from opsutil import DEVICE_DTYPES, DEVICES, DTYPES, maybe_spread, require_compiled, select_inputs


def probe_rows(B: int, P: int, T: int, K: int, g: torch.Generator) -> torch.Tensor:
    """(B, P) distinct tokens in (K, T) per row."""
    return torch.stack([torch.randperm(T - K - 1, generator=g)[:P] + K + 1 for _ in range(B)]) if B else \
        torch.zeros(0, P, dtype=torch.int64)


def naive_budget(z, z_ref, probes, K, k, tau0, eps, ew):
    """float64 per-token loop: (rows, overflow) with the drift part as a list ordered by score."""
    B, T, _ = z.shape
    rows, over = [], []
    for b in range(B):
        taken = set(range(K + 1)) | set(probes[b].tolist())
        scored, drifting = [], 0
        for t in range(T):
            if t in taken:
                continue
            zt, rt = z[b, t].double(), z_ref[b, t].double()
            e = float(zt.square().sum())
            delta = float((zt - rt).norm())
            tau = tau0 / (eps + e) if ew else tau0
            drifting += delta > tau
            scored.append((-(delta * (eps + e) if ew else delta), t))
        fill = k - K - 1 - probes.shape[1]
        rows.append(list(range(K + 1)) + probes[b].tolist() + [t for _, t in sorted(scored)[:fill]])
        over.append(max(0, drifting - fill))
    return rows, over


# (B, N', C, K, P, k)
SHAPES = [(1, 1, 2, 0, 0, 1), (3, 5, 2, 0, 2, 3), (3, 5, 2, 1, 1, 5), (8, 94, 2, 9, 2, 19), (8, 94, 2, 9, 2, 47),
          (4, 17, 6, 3, 0, 4), (2, 33, 1, 0, 3, 33)]


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ew", [True, False], ids=["energy", "plain"])
@pytest.mark.parametrize("noncontig", [False, True], ids=["contig", "strided"])
def test_select_budget_parity(device, dtype, shape, ew, noncontig):
    require_compiled(device)
    B, T, C, K, P, k = shape
    tau0, eps = 0.5, 1e-3
    z, z_ref, _, _ = select_inputs(B, T, C, dtype, device, tau0=tau0, eps=eps, energy_weighted=ew, probe_p=0.0,
                                   force_p=0.0, seed=B * 100 + T)
    probes = probe_rows(B, P, T, K, torch.Generator().manual_seed(T)).to(device)
    idx_out = maybe_spread(torch.full((B, k), 7, dtype=torch.int64, device=device), noncontig)
    over = maybe_spread(torch.full((B,), 3, dtype=torch.int64, device=device), noncontig)
    got = ops.select_budget(*(maybe_spread(t, noncontig) for t in (z, z_ref, probes)), K, tau0, eps, ew,
                            idx_out=idx_out, overflow_out=over)
    assert got is idx_out
    r_idx = torch.empty(B, k, dtype=torch.int64, device=device)
    r_over = torch.full((B,), 3, dtype=torch.int64, device=device)
    ops.reference.select_budget(z, z_ref, probes, K, tau0, eps, ew, idx_out=r_idx, overflow_out=r_over)
    assert torch.equal(idx_out, r_idx) and torch.equal(over, r_over)
    rows, want_over = naive_budget(z.cpu(), z_ref.cpu(), probes.cpu(), K, k, tau0, eps, ew)
    fill = k - K - 1 - P
    for b in range(B):
        row = idx_out[b].tolist()
        assert row[:K + 1 + P] == rows[b][:K + 1 + P]                 # band, then probes, in order
        assert sorted(row[K + 1 + P:]) == sorted(rows[b][K + 1 + P:])  # the same top-drift tokens
        assert len(set(row)) == k                                      # never a repeated token
        assert int(over[b]) == 3 + want_over[b]                        # accumulated, not overwritten
    if fill == T - K - 1 - P:                                          # budget = everything: no overflow
        assert (over == 3).all()


def test_select_budget_ranks_by_drift_over_threshold():
    """Hand-made case: the energy weighting changes which token wins, and overflow counts the rest."""
    z = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.1, 0.0], [2.0, 0.0]]])
    z_ref = z.clone()
    z_ref[0, 2, 0] -= 0.1   # δ 0.1, E 9  -> score 0.9
    z_ref[0, 3, 0] -= 0.5   # δ 0.5, E .01 -> score 0.005 (small token, big move: under its threshold)
    z_ref[0, 4, 0] -= 0.2   # δ 0.2, E 4  -> score 0.8
    idx, over = torch.empty(1, 2, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    for impl in (ops, ops.reference):
        over.zero_()
        impl.select_budget(z, z_ref, torch.zeros(1, 0, dtype=torch.int64), 0, 0.5, 0.0, True, idx_out=idx,
                           overflow_out=over)
        assert idx.tolist() == [[0, 2]] and over.tolist() == [1]      # token 4 (0.8 > 0.5) did not fit
        impl.select_budget(z, z_ref, torch.zeros(1, 0, dtype=torch.int64), 0, 0.5, 0.0, False, idx_out=idx,
                           overflow_out=over)
        assert idx.tolist() == [[0, 3]]                                # plain δ: the small token wins


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_select_budget_bad_input(backend):
    if backend == "compiled" and ops.backend("cpu") == "reference":
        pytest.skip("no compiled pyfdc ops")
    impl = ops if backend == "compiled" else ops.reference
    z = torch.randn(2, 6, 2)

    def call(probes=torch.tensor([[2], [3]]), k=3, K=1, tau0=0.5, z_ref=z.clone(), over=None):
        over = torch.zeros(2, dtype=torch.int64) if over is None else over
        impl.select_budget(z, z_ref, probes, K, tau0, 1e-3, True, idx_out=torch.empty(2, k, dtype=torch.int64),
                           overflow_out=over)

    call()
    with pytest.raises(ValueError, match=r"select_budget: the budget k = 2 must hold the band 0..K and the probes \(K \+ 1 \+ P = 3\)"):
        call(k=2)
    with pytest.raises(ValueError, match=r"select_budget: the budget k = 7 .* at most N' = 6"):
        call(k=7)
    with pytest.raises(ValueError, match=r"select_budget: probes\[1, 0\] = 1 is out of range: probes must lie outside the band"):
        call(probes=torch.tensor([[2], [1]]))
    with pytest.raises(ValueError, match=r"select_budget: probes\[0\] repeats token 4"):
        call(probes=torch.tensor([[4, 4], [2, 3]]), k=4)
    with pytest.raises(ValueError, match=r"select_budget: probes must have dtype int64, got int32"):
        call(probes=torch.tensor([[2], [3]], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"select_budget: z_ref must have shape \(B, N', 2M\) = \[2, 6, 2\], got \[2, 5, 2\]"):
        call(z_ref=torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match=r"select_budget: overflow_out must have dtype int64"):
        call(over=torch.zeros(2))
    with pytest.raises(ValueError, match=r"select_budget: tau0 must be >= 0 and not NaN"):
        call(tau0=float("nan"))


@pytest.mark.parametrize("device", DEVICES)
def test_select_budget_opcheck(device):
    require_compiled(device)
    z, z_ref, _, _ = select_inputs(3, 9, 2, torch.float32, device, tau0=0.5, eps=1e-3, energy_weighted=True,
                                   probe_p=0.0, force_p=0.0, seed=4)
    probes = probe_rows(3, 2, 9, 1, torch.Generator().manual_seed(0)).to(device)
    args = (z, z_ref, probes, 1, 0.5, 1e-3, True, torch.empty(3, 6, dtype=torch.int64, device=device),
            torch.zeros(3, dtype=torch.int64, device=device))
    torch.library.opcheck(torch.ops.pyfdc.select_budget.default, args)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=150, deadline=None)
@given(B=st.integers(1, 6), T=st.integers(1, 40), C=st.integers(1, 4), data=st.data(),
       seed=st.integers(0, 2**31 - 1), ew=st.booleans(), dtype_i=st.integers(0, 2),
       drift=st.sampled_from([0.0, 0.05, 0.5, 3.0]))
def test_select_budget_fuzz(device, B, T, C, data, seed, ew, dtype_i, drift):
    require_compiled(device)
    dtype = DTYPES[device][dtype_i % len(DTYPES[device])]
    K = data.draw(st.integers(0, T - 1))
    P = data.draw(st.integers(0, T - 1 - K))
    k = data.draw(st.integers(K + 1 + P, T))
    z, z_ref, _, _ = select_inputs(B, T, C, dtype, device, tau0=0.5, eps=1e-3, energy_weighted=ew, probe_p=0.0,
                                   force_p=0.0, seed=seed, drift=drift)
    probes = probe_rows(B, P, T, K, torch.Generator().manual_seed(seed)).to(device)
    outs = []
    for impl in (ops, ops.reference):
        idx = torch.empty(B, k, dtype=torch.int64, device=device)
        over = torch.zeros(B, dtype=torch.int64, device=device)
        impl.select_budget(z, z_ref, probes, K, 0.5, 1e-3, ew, idx_out=idx, overflow_out=over)
        outs.append((idx, over))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert all(len(set(row)) == k for row in outs[0][0].tolist())
