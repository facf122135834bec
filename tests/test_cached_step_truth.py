"""Ground truth for one cached step taken *away from* the point of the last refresh.

Refresh at ``(z0, t0)``, then a cached step at ``(z1, t1) != (z0, t0)`` with a known recompute set,
checked against an explicit per-layer reference written here, independently of
``pyfdc.e2crf.step`` (and the paper's variable-set step, the test reference ``paper_step.py``): the fresh K/V of the selected tokens replace the
cached ones (``K = where(selected, fresh, cached)``), only selected queries attend (softmax written
out, not SDPA), the FFN runs on the selected rows, cached tokens read ``h0(z1, t1) + C``; rule rows
write their cumulative residual and input, probe rows are nudged by Eq. 14 with ``fresh != cached``.

float64 networks, so the tolerance (1e-9 relative) is rounding only: a stale feature, a CRF or
``z_ref`` written at the wrong row, or a wrong feedback formula moves results by O(0.01–1).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from paper_step import CachedForward
from pyfdc.e2crf.step import CachedStep
from pyfdc.core.score_net import ModelConfig, ScoreTransformer

T, C = 17, 2
TOL = dict(rtol=1e-9, atol=1e-10)


@pytest.fixture(scope="module")
def net() -> ScoreTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(T, C, d_model=24, n_layers=3, n_heads=3, d_ff=48, rff_dim=8)
    return ScoreTransformer(cfg).double().eval()


def _heads(x, H):
    B, S, d = x.shape
    return x.view(B, S, H, d // H).transpose(1, 2)


def reference_step(net, cache, z1, t1, rule, probe, alpha, eta=1e-6):
    """Independent cached step. ``cache`` = dict(k, v (L,B,H,T,dh), crf (B,T,d), z_ref (B,T,C)) before
    the step; ``rule``, ``probe`` (B,T) bool, disjoint. Returns eps, the new cache and the probe error."""
    H = net.config.n_heads
    sel = rule | probe
    h0 = net.in_proj(z1) + net.pos + net.time_features(t1)[:, None, :]
    h = h0.clone()
    ks, vs = [], []
    for layer, blk in enumerate(net.blocks):
        x = F.layer_norm(h, (h.shape[-1],), blk.ln1.weight, blk.ln1.bias, blk.ln1.eps)
        q, k, v = (_heads(x @ w.T + b, H) for w, b in zip(blk.qkv.weight.chunk(3), blk.qkv.bias.chunk(3)))
        m = sel[:, None, :, None]
        K = torch.where(m, k, cache["k"][layer])
        V = torch.where(m, v, cache["v"][layer])
        att = torch.softmax(q @ K.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ V
        a = att.transpose(1, 2).reshape(h.shape) @ blk.proj.weight.T + blk.proj.bias
        h1 = h + a
        y = F.layer_norm(h1, (h.shape[-1],), blk.ln2.weight, blk.ln2.bias, blk.ln2.eps)
        h1 = h1 + F.gelu(y @ blk.ff1.weight.T + blk.ff1.bias) @ blk.ff2.weight.T + blk.ff2.bias
        h = torch.where(sel[..., None], h1, h)   # cached rows do not advance
        ks.append(K)
        vs.append(V)
    fresh = h - h0
    old = cache["crf"]
    diff = torch.where(probe[..., None], fresh - old, 0)
    err = diff.square().sum((1, 2))
    rel = err / (torch.where(probe[..., None], fresh, 0).square().sum((1, 2)) + eta)
    crf = torch.where(rule[..., None], fresh, old + alpha[:, None, None] * diff)
    z_ref = torch.where(rule[..., None], z1, cache["z_ref"])
    feat = torch.where(sel[..., None], h, h0 + crf)
    eps = net.out_proj(net.ln_f(feat))
    return eps, dict(k=torch.stack(ks), v=torch.stack(vs), crf=crf, z_ref=z_ref), rel


def _points(B, seed=0):
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    z1 = z0 + 0.3 * torch.randn(B, T, C, generator=g, dtype=torch.float64)
    return z0, torch.full((B,), 0.7, dtype=torch.float64), z1, torch.full((B,), 0.55, dtype=torch.float64)


def _snapshot(cache):
    return {n: getattr(cache, n).clone() for n in ("k", "v", "crf", "z_ref")}


def _check_refresh(net, fwd_eps, cache, z0, t0):
    """A refresh equals the plain forward, and its cache holds that forward's per-layer K/V."""
    torch.testing.assert_close(fwd_eps, net(z0, t0), **TOL)
    h = net.embed(z0, t0)
    h0 = h
    for layer, blk in enumerate(net.blocks):
        _, k, v = blk.qkv_heads(h)
        torch.testing.assert_close(cache.k[layer], k, **TOL)
        torch.testing.assert_close(cache.v[layer], v, **TOL)
        h = blk(h)
    torch.testing.assert_close(cache.crf, h - h0, **TOL)
    assert torch.equal(cache.z_ref, z0)


def _mask(rows, B):
    m = torch.zeros(B, T, dtype=torch.bool)
    for b, r in enumerate(rows):
        m[b, [j for j in r if j >= 0]] = True
    return m


def _assert_step(net, before, cache, eps, z1, t1, rule, probe, alpha, err=None):
    want_eps, want, want_err = reference_step(net, before, z1, t1, rule, probe, alpha)
    torch.testing.assert_close(eps, want_eps, **TOL)
    for name in ("k", "v", "crf", "z_ref"):
        torch.testing.assert_close(getattr(cache, name), want[name], **TOL, msg=lambda m: f"{name}: {m}")
    if err is not None:
        torch.testing.assert_close(err, want_err, **TOL)
    # the step really moved away from the refresh point: a stale forward would differ by this much
    assert (want_eps - net(z1, t1)).abs().max() > 1e-4 or probe.all()


@pytest.mark.parametrize("B,path", [(3, "packed"), (1, "slab"), (3, "masked_dense")])
def test_cached_forward_step_matches_reference(net, B, path):
    fwd = CachedForward(net, B, T, C, max_probes=2, dense_fraction=0.0 if path == "masked_dense" else 0.99,
                        dtype=torch.float64)
    z0, t0, z1, t1 = _points(B)
    full = torch.arange(T).expand(B, T).contiguous()
    eps0, _, _ = fwd(z0, t0, full, torch.full((B,), T), None, torch.zeros(B, dtype=torch.float64), 1e-6)
    _check_refresh(net, eps0, fwd.cache, z0, t0)
    # fresh != cached before the probe step: perturb the CRF so error feedback has something to do
    fwd.cache.crf.add_(0.05 * torch.randn_like(fwd.cache.crf))
    before = _snapshot(fwd.cache)
    rule_rows = [[0, 1, 5, 9], [0, 1, 2], [0, 1, 16, 3, 7, 11]][:B]
    probe_rows = [[12, 4], [8, -1], [6, 13]][:B]
    idx = torch.full((B, T), -1)
    count = torch.zeros(B, dtype=torch.int64)
    for b, r in enumerate(rule_rows):
        idx[b, :len(r)] = torch.tensor(sorted(r))
        count[b] = len(r)
    probes = torch.tensor(probe_rows)
    alpha = torch.tensor([0.3, 0.0, 1.0][:B], dtype=torch.float64)
    eps, err, _ = fwd(z1, t1, idx, count, probes, alpha, 1e-6)
    _assert_step(net, before, fwd.cache, eps, z1, t1, _mask(rule_rows, B), _mask(probe_rows, B), alpha, err)


@pytest.mark.parametrize("B", [1, 4])
@pytest.mark.parametrize("step", ["sparse", "masked"])
def test_budget_step_matches_reference(net, B, step):
    K, P, k = 1, 2, 7
    fwd = CachedStep(net, B, T, C, k=k, K=K, num_probes=P, tau0=0.5, eps=1e-6, dtype=torch.float64)
    z0, t0, z1, t1 = _points(B, seed=1)
    _check_refresh(net, fwd.refresh(z0, t0), fwd.cache, z0, t0)
    fwd.cache.crf.add_(0.05 * torch.randn_like(fwd.cache.crf))
    before = _snapshot(fwd.cache)
    probes = torch.tensor([[10, 3], [2, 16], [5, 8], [14, 12]][:B])
    alpha = torch.linspace(0.0, 1.0, B, dtype=torch.float64)
    force = torch.zeros(B, dtype=torch.bool)
    if step == "masked" and B > 1:
        force[1] = True
    if step == "sparse":
        eps, err = fwd.sparse(z1, t1, probes, alpha)
    else:
        eps, err = fwd.masked(z1, t1, probes, alpha, force)
    idx = fwd.idx.clone()
    assert idx[:, :K + 1].tolist() == [[0, 1]] * B and torch.equal(idx[:, K + 1:K + 1 + P], probes)
    # the drift part: the k-K-1-P tokens outside band and probes with the largest δ (E + eps)
    delta = (z1 - before["z_ref"]).norm(dim=-1) * (z1.square().sum(-1) + 1e-6)
    delta[:, :K + 1] = -1
    delta.scatter_(1, probes, -1)
    assert set(map(tuple, idx[:, K + 1 + P:].sort(1).values.tolist())) == \
        set(map(tuple, delta.topk(k - K - 1 - P, dim=1).indices.sort(1).values.tolist()))
    rule_rows = [r[:K + 1] + r[K + 1 + P:] for r in idx.tolist()]
    rule = _mask(rule_rows, B) | force[:, None]
    probe = _mask(probes.tolist(), B) & ~force[:, None]
    _assert_step(net, before, fwd.cache, eps, z1, t1, rule, probe, alpha)
    want_err = reference_step(net, before, z1, t1, rule, probe, alpha)[2]
    torch.testing.assert_close(err, torch.where(force, 0, want_err), **TOL)


def test_cached_rows_do_no_work(net):
    """Forward hooks count the rows through every block's QKV and FFN: exactly B·k per layer."""
    B, K, P, k = 4, 1, 2, 6
    fwd = CachedStep(net, B, T, C, k=k, K=K, num_probes=P, tau0=0.5, eps=1e-6, dtype=torch.float64)
    z0, t0, z1, t1 = _points(B, seed=2)
    fwd.refresh(z0, t0)
    rows: list[tuple[str, int]] = []
    hooks = []
    for i, blk in enumerate(net.blocks):
        for name in ("qkv", "ff1", "proj"):
            hooks.append(getattr(blk, name).register_forward_hook(
                lambda mod, inp, out, tag=f"{name}{i}": rows.append((tag, inp[0].numel() // inp[0].shape[-1]))))
    try:
        fwd.sparse(z1, t1, torch.tensor([[3, 4]] * B), torch.zeros(B, dtype=torch.float64))
    finally:
        for h in hooks:
            h.remove()
    assert len(rows) == 3 * len(net.blocks)
    assert all(n == B * k for _, n in rows), rows


def test_probe_padding_position_does_not_matter(net):
    """A probe row with its padding first gives the same step as with its padding last (the slab rows
    of the probes are laid out by the caller; a wrong layout fed another row's residual to the CRF)."""
    outs = []
    for row in ([[-1, 12], [6, -1]], [[12, -1], [6, -1]]):
        fwd = CachedForward(net, 2, T, C, max_probes=2, dtype=torch.float64)
        z0, t0, z1, t1 = _points(2, seed=5)
        full = torch.arange(T).expand(2, T).contiguous()
        fwd(z0, t0, full, torch.full((2,), T), None, torch.zeros(2, dtype=torch.float64), 1e-6)
        fwd.cache.crf.add_(0.05)
        idx = torch.full((2, T), -1)
        idx[:, :3] = torch.tensor([0, 1, 2])
        eps, err, _ = fwd(z1, t1, idx, torch.tensor([3, 3]), torch.tensor(row), torch.full((2,), 0.5, dtype=torch.float64), 1e-6)
        outs.append((eps, err, fwd.cache.crf.clone()))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, **TOL)


def _refresh_then_cached_step(fwd, g, B):
    """Refresh at ``(z0, t0 = 0.6)``, then one budget step (no probes) at ``(z2, t2 = 0.4)`` with z moved
    by 0.2·N(0, 1); returns ``z0, t0, eps0, z2, t2, eps2`` and the recomputed-token mask."""
    z0 = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    t0, t2 = torch.full((B,), 0.6, dtype=torch.float64), torch.full((B,), 0.4, dtype=torch.float64)
    eps0 = fwd.refresh(z0, t0)
    z2 = z0 + 0.2 * torch.randn(B, T, C, generator=g, dtype=torch.float64)
    eps2, _ = fwd.sparse(z2, t2, torch.zeros(B, 0, dtype=torch.int64), torch.zeros(B, dtype=torch.float64))
    return z0, t0, eps0, z2, t2, eps2, _mask(fwd.idx.tolist(), B)


def test_gaussian_output_tracks_the_gaussian_part_and_keeps_the_rest(net):
    """cached_output='gaussian': a cached token's ε̂ at (z2, t2) is W(z2, t2) + (ε̂0 − W(z0, t0)) with
    W = σ (z − α μ)/(α² λ + σ²); recomputed tokens keep the network's ε̂. A cache serving ε̂0 (stale)
    or W at (z0, t0) misses by the change of W, O(0.1) here."""
    from pyfdc.core.sde import VPSDE

    sde = VPSDE()
    B, K, k = 2, 1, 5
    g = torch.Generator().manual_seed(4)
    mu = torch.randn(T, C, generator=g, dtype=torch.float64)
    lam = torch.rand(T, C, generator=g, dtype=torch.float64) * 2 + 0.05
    fwd = CachedStep(net, B, T, C, k=k, K=K, num_probes=0, tau0=0.5, eps=1e-6, dtype=torch.float64,
                        cached_output="gaussian", sde=sde, moments=(mu, lam))
    z0, t0, eps0, z2, t2, eps2, sel = _refresh_then_cached_step(fwd, g, B)

    def W(z, t):
        a, s = (v[:, None, None] for v in sde.marginal(t))
        return s * (z - a * mu) / (a * a * lam + s * s)

    want_cached = W(z2, t2) + eps0 - W(z0, t0)
    torch.testing.assert_close(eps2[~sel], want_cached[~sel], **TOL)
    assert (W(z2, t2) - W(z0, t0))[~sel].abs().max() > 0.05        # the tracked part is not negligible
    fresh_eps = net.out_proj(net.ln_f(fwd.feat))
    torch.testing.assert_close(eps2[sel], fresh_eps[sel], **TOL)
    torch.testing.assert_close(fwd.rest[sel], (fresh_eps - W(z2, t2))[sel], **TOL)


def test_gaussian_output_needs_moments(net):
    from pyfdc.core.sde import VPSDE

    with pytest.raises(ValueError, match="needs the token moments"):
        CachedStep(net, 2, T, C, k=5, K=1, num_probes=0, tau0=0.5, eps=1e-6, dtype=torch.float64,
                      cached_output="gaussian", sde=VPSDE())
