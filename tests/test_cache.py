"""KVCache: shapes, in-place updates through the ops, reuse across steps, reset."""
from __future__ import annotations

import pytest
import torch

import pyfdc
from pyfdc import ops
from pyfdc.e2crf.kv_cache import KVCache
from opsutil import DEVICES, index_rows


def make(device="cpu"):
    return KVCache(num_layers=3, batch_size=2, num_heads=2, num_tokens=5, head_dim=4, token_dim=2, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_shapes(device):
    c = make(device)
    assert pyfdc.KVCache is KVCache
    assert c.shape == (3, 2, 2, 5, 4)
    assert c.crf.shape == (2, 5, 8) and c.z_ref.shape == (2, 5, 2)
    with pytest.raises(ValueError, match="num_tokens=0"):
        KVCache(3, 2, 2, 0, 4, 2)


def _step(c, z, k_new, probes, device):
    """One select -> scatter -> feedback cycle; every input is made before it (see the allocation test)."""
    probe, force, fresh, alpha = _extras(device, probes.shape[1])
    idx, count = ops.select_tokens(z, c.z_ref, probe, force, 0, 0.3, 1e-3, idx_out=c.idx, count_out=c.count)
    for layer in range(3):
        ops.kv_scatter(c.k, c.v, layer, idx, k_new, k_new)
    err = ops.error_feedback(c.crf, fresh, probes, alpha, err_out=c.err)
    return idx, count, err


_EXTRAS: dict = {}


def _extras(device, P):
    key = (device, P)
    if key not in _EXTRAS:
        _EXTRAS[key] = (torch.zeros(2, 5, dtype=torch.bool, device=device), torch.zeros(2, dtype=torch.bool, device=device),
                        torch.ones(2, P, 8, device=device), torch.full((2,), 0.5, device=device))
    return _EXTRAS[key]


@pytest.mark.parametrize("device", DEVICES)
def test_step_cycle_reuses_buffers(device):
    c = make(device)
    ptrs = {name: t.data_ptr() for name, t in c.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        z = torch.randn(2, 5, 2, generator=g).to(device)
        k_new = torch.randn(2, 2, 5, 4, generator=g).to(device)
        idx, count, err = _step(c, z, k_new, index_rows(2, 2, 5, "all", g).to(device), device)
        assert idx is c.idx and count is c.count and err is c.err
        for b in range(2):
            sel = idx[b, : int(count[b])]
            assert torch.equal(c.k[2, b][:, sel], k_new[b][:, : len(sel)])
    assert {name: t.data_ptr() for name, t in c.state_dict().items()} == ptrs
    c.reset()
    assert (c.k == 0).all() and (c.crf == 0).all() and (c.idx == -1).all()
    assert {name: t.data_ptr() for name, t in c.state_dict().items()} == ptrs


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_ops_allocate_nothing_per_step(device):
    from opsutil import require_compiled
    from torch.profiler import ProfilerActivity, profile

    require_compiled(device)
    c = make(device)
    z = torch.randn(2, 5, 2, device=device)
    k_new = torch.randn(2, 2, 5, 4, device=device)
    probes = torch.tensor([[1, 3], [4, -1]], device=device)
    _step(c, z, k_new, probes, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities, profile_memory=True) as prof:
        _step(c, z, k_new, probes, device)
    allocations = [e for e in prof.events() if e.name == "[memory]"]
    assert allocations == []
