"""Bad input raises ValueError naming the op, the argument and what was expected — on the compiled
path (C++ checks; the fake kernels for meta tensors) and on the reference twins alike. One test
per class of mistake."""
from __future__ import annotations

import re

import pytest
import torch

import pyfdc.ops as ops

BACKENDS = ["compiled", "reference"]


def impl(backend):
    if backend == "compiled":
        if ops.backend("cpu") == "reference":
            pytest.skip("no compiled pyfdc ops")
        return ops
    return ops.reference


def good(B=2, T=5, C=2, L=2, H=2, dh=3, S=3, d=6):
    idx = torch.tensor([[0, 3, -1], [4, -1, 1]])[:B]
    return {
        "kv_scatter": dict(k_cache=torch.zeros(L, B, H, T, dh), v_cache=torch.zeros(L, B, H, T, dh), layer=1,
                           idx=idx, k_new=torch.ones(B, H, S, dh), v_new=torch.ones(B, H, S, dh)),
        "select_tokens": dict(z=torch.randn(B, T, C), z_ref=torch.randn(B, T, C),
                              probe_mask=torch.zeros(B, T, dtype=torch.bool), force=torch.zeros(B, dtype=torch.bool),
                              K=1, tau0=0.5, eps=1e-3),
        "error_feedback": dict(crf=torch.zeros(B, T, d), fresh=torch.ones(B, S, d), idx=idx, alpha=torch.full((B,), 0.1)),
    }


def call(backend, op, **over):
    kwargs = good()[op]
    kwargs.update(over)
    return getattr(impl(backend), op)(**kwargs)


def raises(match):
    return pytest.raises(ValueError, match=match)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_rank(backend):
    with raises(r"select_tokens: z must have shape \(B, N', 2M\) \(3 dims\), got \[2, 5\]"):
        call(backend, "select_tokens", z=torch.randn(2, 5))
    with raises(r"kv_scatter: k_cache must have shape \(L, B, H, N', dh\) \(5 dims\)"):
        call(backend, "kv_scatter", k_cache=torch.zeros(2, 2, 5, 3))
    with raises(r"error_feedback: idx must have shape \(B, k\) \(2 dims\), got \[6\]"):
        call(backend, "error_feedback", idx=torch.zeros(6, dtype=torch.int64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mismatched_batch(backend):
    with raises(r"select_tokens: force must have shape \(B,\) = \[2\], got \[3\]"):
        call(backend, "select_tokens", force=torch.zeros(3, dtype=torch.bool))
    with raises(r"kv_scatter: k_new must have shape \(B, H, k, dh\) = \[2, 2, 3, 3\], got \[1, 2, 3, 3\]"):
        call(backend, "kv_scatter", k_new=torch.ones(1, 2, 3, 3))
    with raises(r"error_feedback: alpha must have shape \(B,\) = \[2\], got \[4\]"):
        call(backend, "error_feedback", alpha=torch.full((4,), 0.1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mismatched_num_tokens(backend):
    with raises(r"select_tokens: z_ref must have shape \(B, N', 2M\) = \[2, 5, 2\], got \[2, 4, 2\]"):
        call(backend, "select_tokens", z_ref=torch.randn(2, 4, 2))
    with raises(r"select_tokens: probe_mask must have shape \(B, N'\) = \[2, 5\], got \[2, 6\]"):
        call(backend, "select_tokens", probe_mask=torch.zeros(2, 6, dtype=torch.bool))
    with raises(r"kv_scatter: v_cache must have shape \(L, B, H, N', dh\) = \[2, 2, 2, 5, 3\], got \[2, 2, 2, 4, 3\]"):
        call(backend, "kv_scatter", v_cache=torch.zeros(2, 2, 2, 4, 3))
    with raises(r"error_feedback: fresh must have shape \(B, k, d\) = \[2, 3, 6\], got \[2, 3, 5\]"):
        call(backend, "error_feedback", fresh=torch.ones(2, 3, 5))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [5, 9, -2])
def test_index_out_of_range_leaves_state_untouched(backend, bad):
    idx = torch.tensor([[0, 3, -1], [4, bad, 1]])
    msg = rf"idx\[1, 1\] = {bad} is out of range: entries must be -1 \(padding\) or 0 <= j < N' = 5"
    kw = good()["kv_scatter"]
    with raises("kv_scatter: " + msg):
        call(backend, "kv_scatter", idx=idx, k_cache=kw["k_cache"], v_cache=kw["v_cache"])
    assert (kw["k_cache"] == 0).all() and (kw["v_cache"] == 0).all()
    crf = torch.zeros(2, 5, 6)
    with raises("error_feedback: " + msg):
        call(backend, "error_feedback", idx=idx, crf=crf)
    assert (crf == 0).all()
    with raises(r"kv_scatter: layer must be in \[0, L\) = \[0, 2\), got 2"):
        call(backend, "kv_scatter", layer=2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_K(backend):
    with raises(r"select_tokens: K must be >= 0, got -1"):
        call(backend, "select_tokens", K=-1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_tau0_and_bad_eps(backend):
    with raises(r"select_tokens: tau0 must be >= 0 and not NaN, got nan"):
        call(backend, "select_tokens", tau0=float("nan"))
    with raises(r"select_tokens: tau0 must be >= 0 and not NaN, got -0\.5"):
        call(backend, "select_tokens", tau0=-0.5)
    with raises(r"select_tokens: eps must be finite and >= 0, got inf"):
        call(backend, "select_tokens", eps=float("inf"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_dtype(backend):
    with raises(r"select_tokens: z must have a floating dtype \(float16, bfloat16, float32, float64\), got int64"):
        call(backend, "select_tokens", z=torch.zeros(2, 5, 2, dtype=torch.int64))
    with raises(r"select_tokens: z_ref must have dtype float32 like z, got float64"):
        call(backend, "select_tokens", z_ref=torch.randn(2, 5, 2, dtype=torch.float64))
    with raises(r"select_tokens: probe_mask must have dtype bool, got float32"):
        call(backend, "select_tokens", probe_mask=torch.zeros(2, 5))
    with raises(r"kv_scatter: idx must have dtype int64, got int32"):
        call(backend, "kv_scatter", idx=torch.zeros(2, 3, dtype=torch.int32))
    with raises(r"error_feedback: alpha must have dtype float32 like crf, got float64"):
        call(backend, "error_feedback", alpha=torch.full((2,), 0.1, dtype=torch.float64))
    with raises(r"select_tokens: idx_out must have dtype int64, got int32"):
        call(backend, "select_tokens", idx_out=torch.empty(2, 5, dtype=torch.int32))


def _other_device():
    # A second device to mismatch with: the GPU when there is one, else "meta" (whose kernels are
    # the fake kernels on the compiled path; the C++ device check itself then runs on GPU hosts only).
    return "cuda" if torch.cuda.is_available() else "meta"


@pytest.mark.parametrize("backend", BACKENDS)
def test_device_mismatch(backend):
    other = _other_device()
    pat = r"must be on the device of {ref} \(cpu\), got {dev}".format(ref="{ref}", dev=re.escape(other) + r"(:0)?")
    with raises(r"select_tokens: z_ref " + pat.format(ref="z")):
        call(backend, "select_tokens", z_ref=torch.randn(2, 5, 2, device=other))
    with raises(r"kv_scatter: idx " + pat.format(ref="k_cache")):
        call(backend, "kv_scatter", idx=torch.zeros(2, 3, dtype=torch.int64, device=other))
    with raises(r"error_feedback: alpha " + pat.format(ref="crf")):
        call(backend, "error_feedback", alpha=torch.full((2,), 0.1, device=other))
