"""KVCache: shapes, in-place updates through the ops, reuse across steps, reset."""
from __future__ import annotations

import pytest
import torch

import pyfdc
from pyfdc.cache import KVCache
from opsutil import DEVICES, index_rows


def make(device="cpu"):
    return KVCache(num_layers=3, batch_size=2, num_heads=2, num_tokens=5, head_dim=4, token_dim=2, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_shapes_and_views(device):
    c = make(device)
    assert pyfdc.KVCache is KVCache
    assert c.shape == (3, 2, 2, 5, 4)
    assert c.crf.shape == (2, 5, 8) and c.z_ref.shape == (2, 5, 2)
    assert c.last_refresh.shape == (2, 5) and (c.last_refresh == -1).all()
    k1, v1 = c.layer(1)
    assert k1.shape == (2, 2, 5, 4) and k1.data_ptr() == c.k[1].data_ptr() and v1.data_ptr() == c.v[1].data_ptr()
    with pytest.raises(ValueError, match="num_tokens=0"):
        KVCache(3, 2, 2, 0, 4, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_step_cycle_reuses_buffers(device):
    c = make(device)
    ptrs = {name: t.data_ptr() for name, t in c.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    for step in range(3):
        z = torch.randn(2, 5, 2, generator=g).to(device)
        force = torch.tensor([step == 0, False], device=device)
        idx, count = c.select(z, torch.zeros(2, 5, dtype=torch.bool, device=device), force, K=0, tau0=0.3, eps=1e-3)
        assert idx is c.idx and count is c.count
        k_new = torch.randn(2, 2, 5, 4, generator=g).to(device)
        for layer in range(3):
            c.scatter(layer, idx, k_new, -k_new)
        c.mark_refreshed(idx, z, step)
        for b in range(2):
            sel = idx[b, : int(count[b])]
            assert torch.equal(c.z_ref[b, sel], z[b, sel])
            assert (c.last_refresh[b, sel] == step).all()
            assert torch.equal(c.k[2, b][:, sel], k_new[b][:, : len(sel)])
        probes = index_rows(2, 2, 5, "all", g).to(device)
        err = c.error_feedback(torch.ones(2, 2, 8, device=device), probes, torch.full((2,), 0.5, device=device))
        assert err is c.err
    assert (c.last_refresh[0] >= 0).all()  # sample 0 was forced at step 0
    assert {name: t.data_ptr() for name, t in c.state_dict().items()} == ptrs
    c.reset()
    assert (c.k == 0).all() and (c.crf == 0).all() and (c.last_refresh == -1).all() and (c.idx == -1).all()
    assert {name: t.data_ptr() for name, t in c.state_dict().items()} == ptrs


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_ops_allocate_nothing_per_step(device):
    from opsutil import require_compiled
    from torch.profiler import ProfilerActivity, profile

    require_compiled(device)
    c = make(device)
    z = torch.randn(2, 5, 2, device=device)
    probe, force = torch.zeros(2, 5, dtype=torch.bool, device=device), torch.zeros(2, dtype=torch.bool, device=device)
    k_new, fresh = torch.randn(2, 2, 5, 4, device=device), torch.randn(2, 5, 8, device=device)
    alpha = torch.full((2,), 0.1, device=device)

    def step():
        idx, _ = c.select(z, probe, force, K=1, tau0=0.5, eps=1e-3)
        for layer in range(3):
            c.scatter(layer, idx, k_new, k_new)
        c.error_feedback(fresh, idx, alpha)

    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities, profile_memory=True) as prof:
        step()
    allocations = [e for e in prof.events() if e.name == "[memory]"]
    assert allocations == []
