"""torch.library.opcheck on each registered op, and a torch.compile(fullgraph=True) trace of a
cached step through the fake kernels."""
from __future__ import annotations

import pytest
import torch

import pyfdc.ops as ops
from opsutil import DEVICES, index_rows, require_compiled, select_inputs


def _op_samples(device):
    g = torch.Generator().manual_seed(0)
    L, B, H, T, dh, S, d = 2, 3, 2, 5, 4, 3, 8
    idx = index_rows(B, S, T, "mixed", g).to(device)
    z, z_ref, probe, force = select_inputs(B, T, 2, torch.float32, device, tau0=0.5, eps=1e-3,
                                           energy_weighted=True, probe_p=0.2, force_p=0.3, seed=1)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device)

    return {
        "kv_scatter": (rnd(L, B, H, T, dh), rnd(L, B, H, T, dh), 1, idx, rnd(B, H, S, dh), rnd(B, H, S, dh)),
        "select_tokens": (z, z_ref, probe, force, 1, 0.5, 1e-3, True,
                          torch.empty(B, T, dtype=torch.int64, device=device),
                          torch.empty(B, dtype=torch.int64, device=device)),
        "error_feedback": (rnd(B, T, d), rnd(B, S, d), idx, torch.rand(B, generator=g).to(device),
                           torch.empty(B, device=device)),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["kv_scatter", "select_tokens", "error_feedback"])
def test_opcheck(device, name):
    require_compiled(device)
    op = getattr(torch.ops.pyfdc, name).default
    torch.library.opcheck(op, _op_samples(device)[name])


def _step(cache_k, cache_v, crf, z, z_ref, probe, force, k_new, v_new, fresh, alpha, idx_buf, count_buf):
    """The op sequence of one cached step: select, scatter K/V of the selection, error feedback."""
    idx, count = ops.select_tokens(z, z_ref, probe, force, 1, 0.5, 1e-3, idx_out=idx_buf, count_out=count_buf)
    ops.kv_scatter(cache_k, cache_v, 0, idx, k_new, v_new)
    err = ops.error_feedback(crf, fresh, idx, alpha)
    return idx, count, err


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_traces_a_step(device):
    require_compiled(device)
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(3)
    B, H, T, dh, d = 2, 2, 6, 3, 6
    z, z_ref, probe, force = select_inputs(B, T, 2, torch.float32, device, tau0=0.5, eps=1e-3,
                                           energy_weighted=True, probe_p=0.2, force_p=0.0, seed=2)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device)

    state = [rnd(1, B, H, T, dh), rnd(1, B, H, T, dh), rnd(B, T, d)]
    rest = [rnd(B, H, T, dh), rnd(B, H, T, dh), rnd(B, T, d), torch.full((B,), 0.1, device=device)]

    def buffers():
        return [torch.empty(B, T, dtype=torch.int64, device=device), torch.empty(B, dtype=torch.int64, device=device)]

    eager_state = [t.clone() for t in state]
    want = _step(*eager_state, z, z_ref, probe, force, *rest, *buffers())
    compiled = torch.compile(_step, backend="aot_eager", fullgraph=True)
    got_state = [t.clone() for t in state]
    got = compiled(*got_state, z, z_ref, probe, force, *rest, *buffers())
    for a, b in zip(want + tuple(eager_state), got + tuple(got_state)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
