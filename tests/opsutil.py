"""Input builders and comparison helpers for the op tests (imported by the test modules)."""
from __future__ import annotations

import pytest
import torch

import pyfdc.ops as ops

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda,
                                              pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")])]
# dtypes tested per device: fp32/fp64 on the CPU; fp16/bf16/fp32 on CUDA.
DTYPES = {"cpu": (torch.float32, torch.float64), "cuda": (torch.float16, torch.bfloat16, torch.float32)}
DEVICE_DTYPES = [pytest.param(dev, dt, id=f"{dev}-{str(dt)[6:]}", marks=marks)
                 for dev, marks in (("cpu", []), ("cuda", [pytest.mark.cuda, pytest.mark.skipif(
                     not HAS_CUDA, reason="no CUDA device")]))
                 for dt in DTYPES[dev]]


def require_compiled(device: str) -> None:
    """Skip (never pass vacuously) when the compiled op would not run on ``device``."""
    if ops.backend(device) == "reference":
        pytest.skip(f"no compiled pyfdc ops for {device} (backend 'reference')")


def spread(t: torch.Tensor) -> torch.Tensor:
    """A non-contiguous copy of ``t``: every other element of a twice-as-wide buffer."""
    wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
    wide[..., ::2] = t
    view = wide[..., ::2]
    assert t.numel() <= 1 or not view.is_contiguous()
    return view


def maybe_spread(t: torch.Tensor, noncontig: bool) -> torch.Tensor:
    return spread(t) if noncontig else t.clone()


def index_rows(B: int, S: int, T: int, regime: str, g: torch.Generator) -> torch.Tensor:
    """(B, S) int64 rows of distinct tokens in [0, T) padded with -1, padding in random slots.

    regime "none": all padding; "all": as many distinct tokens as fit (min(S, T)); "mixed":
    a random count per sample.
    """
    rows = torch.full((B, S), -1, dtype=torch.int64)
    for b in range(B):
        most = min(S, T)
        n = {"none": 0, "all": most}.get(regime, int(torch.randint(0, most + 1, (1,), generator=g)))
        tokens = torch.randperm(T, generator=g)[:n]
        slots = torch.randperm(S, generator=g)[:n]
        rows[b, slots] = tokens
    return rows


def select_inputs(B, T, C, dtype, device, *, tau0, eps, energy_weighted, probe_p, force_p, seed,
                  drift=0.5, margin=1e-4):
    """z, z_ref, probe_mask, force with no token within a relative ``margin`` of its threshold.

    Tokens whose δ lies within the band around τ (judged in float64 on the dtype-rounded values)
    get ``z_ref = z`` (δ = 0, never selected by the drift rule), so the compiled kernel and the
    twin must agree exactly on the selection despite different summation orders.
    """
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(B, T, C, generator=g, dtype=torch.float64) * 2).to(dtype)
    z_ref = (z.double() + drift * torch.randn(B, T, C, generator=g, dtype=torch.float64)).to(dtype)
    zd, rd = z.double(), z_ref.double()
    delta = (zd - rd).norm(dim=-1)
    tau = tau0 / (eps + zd.square().sum(-1)) if energy_weighted else torch.full_like(delta, tau0)
    finite = torch.isfinite(tau)
    band = finite & ((delta - torch.where(finite, tau, 0)).abs() <= margin * torch.maximum(delta, tau) + 1e-6)
    z_ref[band] = z[band]
    probe = torch.rand(B, T, generator=g) < probe_p
    force = torch.rand(B, generator=g) < force_p
    return [t.to(device) for t in (z, z_ref, probe, force)]


def naive_select(z, z_ref, probe, force, K, tau0, eps, energy_weighted):
    """Per-token Python loop of Eq. (13) in float64: a third opinion on the selection."""
    B, T, _ = z.shape
    rows = []
    for b in range(B):
        row = []
        for t in range(T):
            zt, rt = z[b, t].double(), z_ref[b, t].double()
            tau = tau0 / (eps + float(zt.square().sum())) if energy_weighted else tau0
            if bool(force[b]) or t <= K or bool(probe[b, t]) or float((zt - rt).norm()) > tau:
                row.append(t)
        rows.append(row)
    return rows
