"""The paper's literal E2-CRF (the test-only reference ``paper_policy.py``, variable recompute sets over
the compiled energy-weighted threshold selection): exactness when nothing is cached, batch invariance,
policy/stats, validation.

Tiny untrained model (2 layers, d 32, N = 32 -> N' = 17 tokens, M = 1) and 12–20 EM steps keep this
file at a few seconds. Untrained networks are chaotic over a trajectory, so the exactness tests
compare runs that execute the *same* floating-point operations and use tight tolerances.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from pyfdc import ops
from paper_policy import MODES, E2CRFStats, PaperConfig, PaperSampler
from pyfdc.core.model import DiffusionModel
from tinymodels import one_thread, tiny_model  # noqa: F401 (autouse fixture)

N, M = 32, 1
T = N // 2 + 1
STEPS = 16


def _tiny_model(seed: int = 0) -> DiffusionModel:
    return tiny_model(seed)


@pytest.fixture(scope="module")
def model() -> DiffusionModel:
    return _tiny_model()


# a config that really caches on 16 steps: small band, drift rule active, refresh every 5 steps
CACHING = dict(K=1, tau0=0.5, R=5, num_probes=2)


def _run(model, cfg: PaperConfig, n: int = 4, batch: int = 4, seed: int = 0, offset: int = 0,
         steps: int = STEPS):
    return PaperSampler(model, cfg).sample_tokens(n, steps=steps, batch_size=batch, seed=seed,
                                                  progress=False, sample_offset=offset)


def test_uncached_mode_matches_plain_sampler(model):
    from pyfdc.sampling.sampler import Sampler

    x_ref = Sampler(model).sample(4, steps=STEPS, batch_size=4, seed=3, progress=False)
    x, stats = PaperSampler(model, PaperConfig(mode="uncached")).sample(4, steps=STEPS, batch_size=4,
                                                                         seed=3, progress=False)
    assert x.shape == (4, N, M)
    torch.testing.assert_close(x, x_ref, rtol=0, atol=0)  # same ops, same noise: bitwise
    assert stats.mean_recomputed_fraction == 1.0


@pytest.mark.parametrize("mode", ["full", "no_feedback", "no_energy", "naive_kv", "fixed"])
def test_forcing_all_tokens_equals_uncached(model, mode):
    """R = 1 forces a full refresh every step: same math as the plain forward, gathered."""
    x_ref, _ = _run(model, PaperConfig(mode="uncached"))
    x, stats = _run(model, PaperConfig(mode=mode, R=1, **{k: v for k, v in CACHING.items() if k != "R"}))
    # identical matmuls on an identity gather; only sdpa reads K/V from the contiguous cache instead
    # of strided views, which may reorder fp32 sums (~1e-7 relative); 1e-5 leaves room for 16 steps.
    torch.testing.assert_close(x, x_ref, rtol=1e-5, atol=1e-5)
    assert stats.recomputed_fraction == [1.0] * STEPS
    assert stats.refresh_steps == list(range(STEPS))


def test_band_covering_all_tokens_is_refused_and_band_plus_probes_covering_them_is_uncached(model):
    # K >= N' - 1 would silently switch the cache off: an error naming the limit
    with pytest.raises(ValueError, match=f"puts all N' = {T} tokens"):
        _run(model, PaperConfig(K=T, tau0=math.inf, R=1000, num_probes=2))
    # the widest band that still leaves a token outside it, plus a probe on that token: every token is
    # recomputed every step, so the samples are uncached EM's
    x_ref, _ = _run(model, PaperConfig(mode="uncached"))
    x, stats = _run(model, PaperConfig(K=T - 2, tau0=math.inf, R=1000, num_probes=1))
    torch.testing.assert_close(x, x_ref, rtol=1e-5, atol=1e-5)  # same justification as above
    assert stats.recomputed_fraction == [1.0] * STEPS


@pytest.mark.parametrize("dense_fraction", [0.85, 1.0, 0.0])
def test_batch_invariance(model, dense_fraction):
    """Each sample of a batch of 4 follows its own trajectory, as if run alone with its noise.

    Whatever path (packed, slab, masked-dense) the batch and the single runs take.
    """
    cfg = PaperConfig(**CACHING, dense_fraction=dense_fraction)
    xb, sb = _run(model, cfg, n=4, batch=4, seed=7)
    assert 0.0 < sb.mean_recomputed_fraction < 1.0, "the config must actually cache"
    fracs = []
    for j in range(4):
        xj, sj = _run(model, cfg, n=1, batch=1, seed=7, offset=j)
        # same per-row math; only the slab height kmax (and so matmul blocking) differs: fp32 noise
        torch.testing.assert_close(xb[j : j + 1], xj, rtol=1e-4, atol=1e-4)
        fracs.append(torch.tensor(sj.recomputed_fraction, dtype=torch.float64))
    # per-sample recompute decisions are identical, so the batch mean is the mean of the singles
    torch.testing.assert_close(torch.tensor(sb.recomputed_fraction, dtype=torch.float64),
                               torch.stack(fracs).mean(0), rtol=0, atol=1e-12)


def test_refresh_only_when_no_rule_selects(model):
    """tau0 = inf, K = 0, no probes, no warn: only token 0 between refreshes, all on refresh steps."""
    R = 4
    cfg = PaperConfig(K=0, tau0=math.inf, R=R, num_probes=0, tau_warn=math.inf, tau_safe=math.inf)
    _, stats = _run(model, cfg)
    expected = [1.0 if i % R == 0 else 1.0 / T for i in range(STEPS)]
    assert stats.recomputed_fraction == pytest.approx(expected, abs=1e-12)
    assert stats.refresh_steps == list(range(0, STEPS, R))
    assert stats.warn_steps == [] and stats.probe_steps == []
    refresh_share = len(range(0, STEPS, R)) / STEPS
    want = torch.full((T,), 1 - refresh_share, dtype=torch.float64)
    want[0] = 0.0  # the band token is never served from the cache
    torch.testing.assert_close(torch.tensor(stats.token_hit_rate, dtype=torch.float64), want)


def test_stats_agree_with_selection_op(model, monkeypatch):
    calls: list[torch.Tensor] = []
    real = ops.select_tokens

    def spy(*args, **kwargs):
        idx, count = real(*args, **kwargs)
        calls.append(count.clone())
        return idx, count

    monkeypatch.setattr(ops, "select_tokens", spy)
    _, stats = _run(model, PaperConfig(mode="no_feedback", K=1, tau0=0.5, R=5))
    assert len(calls) == STEPS
    want = [float(c.double().mean()) / T for c in calls]
    assert stats.recomputed_fraction == pytest.approx(want, abs=1e-12)
    assert stats.hit_rate == pytest.approx(1 - sum(want) / STEPS)


def test_probes_and_feedback_are_recorded(model):
    _, stats = _run(model, PaperConfig(**CACHING))
    assert stats.probe_steps, "probes must run on cached steps"
    err = torch.tensor(stats.feedback_error)
    assert (err[stats.probe_steps] > 0).all()
    no_probe = [i for i in range(STEPS) if i not in stats.probe_steps]
    assert (err[no_probe] == 0).all()
    _, s_nf = _run(model, PaperConfig(mode="no_feedback", **{k: v for k, v in CACHING.items()}))
    assert s_nf.probe_steps == [] and max(s_nf.feedback_error) == 0.0


def test_deterministic_under_seed(model):
    cfg = PaperConfig(**CACHING)
    a, sa = _run(model, cfg, seed=11)
    b, sb = _run(model, cfg, seed=11)
    c, _ = _run(model, cfg, seed=12)
    assert torch.equal(a, b)
    assert sa.to_dict() | {"wall_time_s": 0, "peak_rss_growth_bytes": 0} == \
        sb.to_dict() | {"wall_time_s": 0, "peak_rss_growth_bytes": 0}
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("mode", MODES)
def test_all_modes_run_and_stats_are_json_safe(model, mode):
    x, stats = PaperSampler(model, PaperConfig(mode=mode, **CACHING)).sample(
        3, steps=8, batch_size=2, seed=0, progress=False)
    assert x.shape == (3, N, M) and torch.isfinite(x).all()
    d = json.loads(json.dumps(stats.to_dict()))
    for key in ("recomputed_fraction", "event_intensity", "refresh_steps", "token_hit_rate", "probe_steps",
                "warn_steps", "feedback_error", "hit_rate", "mean_recomputed_fraction", "cache_bytes", "cache"):
        assert key in d
    assert len(d["recomputed_fraction"]) == 8 and len(d["token_hit_rate"]) == T
    assert d["cache"] == f"paper-{mode}"
    if mode != "uncached":
        L, H, dh = 2, 4, 8
        assert d["cache_bytes"] >= 2 * L * 2 * H * T * dh * 4  # K and V, batch 2, fp32


def test_pinned_coordinates_stay_zero(model):
    z, _ = _run(model, PaperConfig(**CACHING))
    mask = model.transform.mask()
    assert (z[:, mask == 0] == 0).all()


def test_reference_and_compiled_ops_give_same_samples(model, monkeypatch):
    if ops.backend("cpu") == "reference":
        pytest.skip("compiled pyfdc ops not built")
    from pyfdc.ops import reference

    cfg = PaperConfig(**CACHING)
    a, sa = _run(model, cfg)
    for name in ("select_tokens", "kv_scatter", "error_feedback"):
        monkeypatch.setattr(ops, name, getattr(reference, name))
    b, sb = _run(model, cfg)
    # same selections (checked exactly below); kernels may sum in another order: fp32 rounding only
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert sa.recomputed_fraction == sb.recomputed_fraction


@pytest.mark.parametrize("kwargs, match", [
    (dict(K=-1), "K"), (dict(K=1.5), "K"), (dict(tau0=-1.0), "tau0"), (dict(tau0=float("nan")), "tau0"),
    (dict(eps=0.0), "eps"), (dict(R=0), "R"), (dict(R=2.0), "R"), (dict(tau_warn=0.0), "tau_warn"),
    (dict(tau_safe=0.6, tau_warn=0.5), "tau_safe"), (dict(alpha_max=1.5), "alpha_max"),
    (dict(num_probes=-1), "num_probes"), (dict(eta=0.0), "eta"), (dict(mode="fast"), "mode"),
    (dict(tau_safe=True), "tau_safe"), (dict(dense_fraction=1.5), "dense_fraction"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PaperConfig(**kwargs)


def test_sample_argument_validation(model):
    s = PaperSampler(model)
    with pytest.raises(ValueError, match="num_samples"):
        s.sample(0, steps=2, progress=False)
    with pytest.raises(ValueError, match="steps"):
        s.sample(1, steps=0, progress=False)
    with pytest.raises(TypeError, match="config"):
        PaperSampler(model, {"mode": "full"})


def test_stats_defaults():
    s = E2CRFStats(method="em", cache="paper-full", num_tokens=3, steps=0)
    assert s.mean_recomputed_fraction == 1.0 and s.hit_rate == 0.0


@pytest.mark.parametrize("naive_kv, dense_fraction", [(False, 1.0), (False, 0.0), (True, 1.0)])
def test_sparse_step_on_a_fresh_cache_reproduces_the_full_forward(model, naive_kv, dense_fraction):
    """After a full refresh at (z, t), a sparse step at the same (z, t) must give the plain forward.

    Exercises the gathered path (per-sample subsets of different sizes, -1 padding, probes, K/V scatter)
    — every cached quantity equals its fresh value, so only rounding of h0 + (h − h0) can differ.
    """
    from paper_step import CachedForward

    B, C = 3, model.transform.token_dim
    g = torch.Generator().manual_seed(0)
    z = torch.randn(B, T, C, generator=g) * model.transform.mask()
    t = torch.tensor([0.9, 0.5, 0.1])
    fwd = CachedForward(model.net, B, T, C, naive_kv=naive_kv, max_probes=2, dense_fraction=dense_fraction)
    full = torch.ones(B, dtype=torch.bool)
    no_probe = torch.zeros(B, T, dtype=torch.bool)
    idx, count = ops.select_tokens(z, fwd.z_ref, no_probe, full, 0, 0.0, 1e-6)
    fwd(z, t, idx.clone(), count.clone(), None, torch.zeros(B), 1e-6)
    with torch.no_grad():
        want = model.net(z, t)
    # sample b recomputes tokens {0} ∪ a random subset of size 3 b, then probes two of the others
    idx = torch.full((B, T), -1, dtype=torch.int64)
    count = torch.zeros(B, dtype=torch.int64)
    probes = torch.full((B, 2), -1, dtype=torch.int64)
    for b in range(B):
        rest = torch.randperm(T - 1, generator=g)[: 3 * b] + 1
        chosen = torch.cat([torch.zeros(1, dtype=torch.int64), rest]).sort().values
        idx[b, : len(chosen)], count[b] = chosen, len(chosen)
        others = [k for k in range(T) if k not in set(chosen.tolist())]
        probes[b, : min(2, b)] = torch.tensor(others[: min(2, b)], dtype=torch.int64)
    # poison what the step must overwrite: K/V of every recomputed/probed token, CRF of recomputed ones
    for b in range(B):
        rows = idx[b, : count[b]] if naive_kv else torch.cat([idx[b, : count[b]], probes[b][probes[b] >= 0]])
        fwd.k_cache[:, b, :, rows] = 1e3
        fwd.v_cache[:, b, :, rows] = -1e3
        fwd.crf[b, idx[b, : count[b]]] = 1e3
    eps_hat, err, _ = fwd(z, t, idx, count, None if naive_kv else probes, torch.full((B,), 0.1), 1e-6)
    # fp32: cached rows use h0 + (h - h0) instead of h (one extra rounding of O(|h|) ~ 1e-7 relative)
    torch.testing.assert_close(eps_hat, want, rtol=1e-5, atol=1e-5)
    if err is not None:
        assert float(err.max()) < 1e-8  # a fresh cache has (almost) no error to feed back
